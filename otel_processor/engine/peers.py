"""Peer memory: which identities made the same change at about the same time.

A deploy adding a route, a runner pool moving range, a seasonal surge and a downstream outage are
changes many identities make at once. The correlator asks this registry, each time it scores,
how many other identities reported the same change key (``("network", hash)``, ``("volume",)``,
``("fail", target)``...) within ``peer_window_s``; a change shared by enough of the group is
discounted. Everything here is bounded: members per group, keys per group, identities per key.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_GROUPS = 4096
MAX_MEMBERS = 512
MAX_KEYS = 512
MAX_REPORTERS = 64


class _Group:
    __slots__ = ("members", "changes")

    def __init__(self) -> None:
        self.members: OrderedDict[str, int] = OrderedDict()
        self.changes: OrderedDict[tuple, OrderedDict[str, int]] = OrderedDict()


def _expire(table: OrderedDict, since: int) -> None:
    while table:
        oldest = next(iter(table.values()))
        if oldest >= since:
            return
        table.popitem(last=False)


def _timed(pairs) -> list[tuple[str, int]]:
    out = [(m, t) for m, t in pairs]
    if not all(isinstance(m, str) and type(t) is int for m, t in out):
        raise ValueError("an identity and a time expected")
    return out


class PeerRegistry:
    def __init__(self, window_ns: int):
        self.window_ns = window_ns
        self._groups: OrderedDict[str, _Group] = OrderedDict()

    def _group(self, name: str) -> _Group:
        g = self._groups.get(name)
        if g is None:
            g = self._groups[name] = _Group()
            if len(self._groups) > MAX_GROUPS:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(name)
        return g

    def seen(self, group: str, identity: str, t: int) -> None:
        members = self._group(group).members
        members[identity] = t
        members.move_to_end(identity)
        if len(members) > MAX_MEMBERS:
            members.popitem(last=False)

    def report(self, group: str, key: tuple, identity: str, t: int) -> None:
        g = self._group(group)
        reporters = g.changes.get(key)
        if reporters is None:
            reporters = g.changes[key] = OrderedDict()
            if len(g.changes) > MAX_KEYS:
                g.changes.popitem(last=False)
        else:
            g.changes.move_to_end(key)
        reporters[identity] = t
        reporters.move_to_end(identity)
        if len(reporters) > MAX_REPORTERS:
            reporters.popitem(last=False)

    def shared_by(self, group: str, key: tuple, t: int) -> tuple[int, int]:
        """(identities that made this change within the window, active members of the group).

        Both tables are ordered by last report, so expiring is popping from the front.
        """
        g = self._groups.get(group)
        if g is None:
            return 0, 0
        since = t - self.window_ns
        reporters = g.changes.get(key)
        if reporters:
            _expire(reporters, since)
        _expire(g.members, since)
        return (len(reporters) if reporters else 0), len(g.members)

    def members(self, group: str) -> int:
        """Identities of the group seen within the window (as of the last look-up; no expiry here:
        inspection must not change what detection sees)."""
        g = self._groups.get(group)
        return len(g.members) if g is not None else 0

    def state(self) -> list:
        return [self.group_state(name) for name in self._groups]

    def group_state(self, name: str) -> list | None:
        g = self._groups.get(name)
        if g is None:
            return None
        return [name, list(g.members.items()), [[list(k), list(v.items())] for k, v in g.changes.items()]]

    def restore(self, s: list) -> None:
        """What ``state`` wrote, or ValueError (a snapshot is checked before it is used)."""
        self._groups.clear()
        if len(s) > MAX_GROUPS:
            raise ValueError("more peer groups than are kept")
        for name, members, changes in s:
            if not isinstance(name, str) or len(members) > MAX_MEMBERS or len(changes) > MAX_KEYS:
                raise ValueError("a peer group is not as the engine writes it")
            g = self._groups[name] = _Group()
            g.members.update(_timed(members))
            for key, reporters in changes:
                if len(reporters) > MAX_REPORTERS or not all(isinstance(x, (str, int)) and not isinstance(x, bool)
                                                             or x is None for x in key):
                    raise ValueError("a peer group's change is not as the engine writes it")
                g.changes[tuple(key)] = OrderedDict(_timed(reporters))
