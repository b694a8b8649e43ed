"""Which identities the engine remembers: bounded, and flood-proof.

Two tiers, each least-recently-seen first:

- **probation**: every identity starts here. It may use any room the settled tier leaves free,
  and is what a flood of new identities churns: a newcomer pushes out the least recently seen
  newcomer, never a settled identity.
- **settled**: identities that finished warm-up (enough history and records), and catalogued ones
  (pinned: never evicted). Capped at ``capacity`` minus the room reserved for probation. A
  graduate may replace a settled identity only if that one has been idle for ``protect_idle_ns``
  of event time; otherwise it stays in probation until room appears.

So an attacker creating identities cannot flush a baseline that is in use: to push out a settled
identity it must keep its own identities alive through warm-up, and even then only identities
idle for longer than ``protect_idle_ns`` give way. Evictions are counted per tier and logged at
most once a minute.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

log = logging.getLogger(__name__)

PROBATION, SETTLED, PINNED = 0, 1, 2
LOG_EVERY_S = 60.0


class Roster:
    def __init__(self, capacity: int, probation_share: float = 0.25, protect_idle_ns: int = 30 * 86_400 * 10**9):
        self.capacity = max(1, capacity)
        reserved = max(1, int(self.capacity * probation_share)) if self.capacity > 1 else 0
        self.settled_cap = self.capacity - reserved
        self.protect_idle_ns = protect_idle_ns
        self.probation: OrderedDict = OrderedDict()
        self.settled: OrderedDict = OrderedDict()
        self.evicted = {"probation": 0, "settled": 0}
        self._unlogged = {"probation": 0, "settled": 0}
        self._logged_at = 0.0

    def __len__(self) -> int:
        return len(self.probation) + len(self.settled)

    @property
    def evictions(self) -> int:
        return self.evicted["probation"] + self.evicted["settled"]

    def get(self, key: str):
        """The profile of ``key`` (marked as just seen), or None."""
        p = self.settled.get(key)
        if p is not None:
            self.settled.move_to_end(key)
            return p
        p = self.probation.get(key)
        if p is not None:
            self.probation.move_to_end(key)
        return p

    def peek(self, key: str):
        """The profile of ``key`` without marking it as seen."""
        p = self.settled.get(key)
        return p if p is not None else self.probation.get(key)

    def admit(self, key: str, p, pinned: bool) -> None:
        """A profile not seen before. Pinned (catalogued) ones are settled at once."""
        if pinned:
            p.tier = PINNED
            self.settled[key] = p
            if len(self.settled) > self.settled_cap:
                self._evict_idle_settled(p.last_ns, force=True)
        else:
            p.tier = PROBATION
            self.probation[key] = p
        while len(self) > self.capacity and self.probation:
            self._evict(self.probation, "probation")

    def graduate(self, key: str, p, now_ns: int) -> bool:
        """Move a warmed-up profile from probation to settled, if there is room for it."""
        if len(self.settled) >= self.settled_cap and not self._evict_idle_settled(now_ns):
            return False
        del self.probation[key]
        p.tier = SETTLED
        self.settled[key] = p
        return True

    def _evict_idle_settled(self, now_ns: int, force: bool = False) -> bool:
        """Evicts the least recently seen unpinned settled profile if it is idle enough (or ``force``)."""
        for _ in range(8):  # pinned profiles at the front rotate to the back
            if not self.settled:
                return False
            key, oldest = next(iter(self.settled.items()))
            if oldest.tier == PINNED:
                self.settled.move_to_end(key)
                continue
            if force or now_ns - oldest.last_ns >= self.protect_idle_ns:
                self._evict(self.settled, "settled")
                return True
            return False
        return False

    def _evict(self, tier: OrderedDict, name: str) -> None:
        tier.popitem(last=False)
        self.evicted[name] += 1
        self._unlogged[name] += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            log.warning("identity state full (%d tracked): evicted %d new identities in probation and %d settled "
                        "ones idle for %.0f days or more since the last report", len(self),
                        self._unlogged["probation"], self._unlogged["settled"], self.protect_idle_ns / 86_400e9)
            self._unlogged = {"probation": 0, "settled": 0}
            self._logged_at = now

    def items(self) -> list[tuple[str, object]]:
        """Every (key, profile), settled first, each tier least recently seen first (a copy)."""
        return list(self.settled.items()) + list(self.probation.items())

    def clear(self) -> None:
        self.probation.clear()
        self.settled.clear()

    def put(self, key: str, p) -> None:
        """Restores a profile into the tier it was in (snapshots keep the order)."""
        (self.probation if p.tier == PROBATION else self.settled)[key] = p
