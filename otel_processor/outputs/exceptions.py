"""Exceptions: "this is expected here", owned, dated and narrow.

An exception keeps matching convergence events from being sent; the engine still learns, scores
and writes trust on every record, so an exception hides an alert, never the evidence. Each entry
names an owner, a reason and an expiry date; one that would live longer than ``MAX_DAYS`` must say
``long_lived: true``. Matching is narrow by construction (the way Elastic's and Falco's exception
lists work): every field given must hold, and a list field (``facets``, ``networks``, ``actions``,
``targets``) holds only when *every* value of the event falls under one of its patterns, so an
event that adds anything new (a second facet, another network) is sent. Patterns are
shell-style globs (``*``, ``?``, ``[...]``), case-sensitive; ``networks`` also takes CIDRs,
checked against the event's source addresses.

Expiry is judged in event time, the engine's only clock: a replayed capture from last month is
judged with the exceptions of last month. The service also logs, at start-up, on reload and daily
by the wall clock, every exception that has expired, so that an owner is told to renew or drop it.

Example (``otel_processor/testdata/exceptions.yaml``)::

    exceptions:
      - id: backup-role-nightly-copy
        match:
          identity: "workload:arn:aws:iam::*:role/backup-*"
          facets: [volume, "new_value.target"]
        owner: platform-team@example.com
        reason: The nightly backup copies every bucket; reviewed in SEC-1234.
        expires: 2027-01-31
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ..errors import ConfigError
from ..model import FACT_OVERFLOW, IDENTITY_KINDS, ConvergenceEvent
from ..yamlbind import load_file

MAX_DAYS = 90
MAX_ENTRIES = 10_000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")
_WILDCARDS_ONLY = re.compile(r"^[*?]*$")


def expiry_of(value: Any) -> dt.datetime:
    """``2027-01-31`` (the start of that day, UTC) or an RFC 3339 time."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"expires: {value!r} is not a date (YYYY-MM-DD) or an RFC 3339 time") from None
    else:
        raise ValueError("expires is required: a date (YYYY-MM-DD) or an RFC 3339 time")
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


@dataclass
class ExceptionMatch:
    """What an event must be for the exception to apply; every field given must hold."""

    identity: str | None = None        # identity id (kind:principal) or glob
    kind: str | None = None            # identity kind
    rule: str | None = None            # security_rule.name, or glob
    facets: list[str] = field(default_factory=list)    # every finding facet matches one
    networks: list[str] = field(default_factory=list)  # every source address in one (CIDR or glob)
    actions: list[str] = field(default_factory=list)   # every evidence action matches one
    targets: list[str] = field(default_factory=list)   # every evidence target matches one

    def validate(self) -> None:
        if not any((self.identity, self.kind, self.rule, self.facets, self.networks, self.actions, self.targets)):
            raise ValueError("match is empty: an exception must name what it applies to")
        if self.identity is not None and _WILDCARDS_ONLY.match(self.identity):
            raise ValueError("match.identity matches every identity: name the identity or a narrow pattern")
        if self.kind is not None and self.kind not in IDENTITY_KINDS:
            raise ValueError(f"match.kind must be one of {', '.join(IDENTITY_KINDS)}, got {self.kind!r}")
        for name in ("facets", "networks", "actions", "targets"):
            if any(not p or _WILDCARDS_ONLY.match(p) for p in getattr(self, name)):
                raise ValueError(f"match.{name}: a pattern of wildcards only matches everything; leave it out")
        self._cidrs = []
        for pattern in self.networks:
            if "/" in pattern and "*" not in pattern:
                try:
                    self._cidrs.append(ipaddress.ip_network(pattern, strict=False))
                except ValueError:
                    raise ValueError(f"match.networks: {pattern!r} is not a CIDR network") from None

    def holds(self, event: ConvergenceEvent) -> bool:
        ident = event.identity
        if self.kind is not None and ident.kind != self.kind:
            return False
        if self.identity is not None and not fnmatchcase(ident.id, self.identity):
            return False
        if self.rule is not None and not fnmatchcase(event.rule_name, self.rule):
            return False
        facts = event.facts
        if self.facets and not _all_under([f.split(":", 1)[0] for f in event.findings], self.facets):
            return False
        # An event whose values outran what is kept cannot be vouched for value by value.
        if self.actions and ("action" + FACT_OVERFLOW in facts or not _all_under(facts.get("action", ()), self.actions)):
            return False
        if self.targets and ("target" + FACT_OVERFLOW in facts or not _all_under(facts.get("target", ()), self.targets)):
            return False
        if self.networks and ("source.address" + FACT_OVERFLOW in facts or "network" + FACT_OVERFLOW in facts
                              or not self._networks_hold(facts)):
            return False
        return True

    def _networks_hold(self, facts: dict) -> bool:
        addresses = facts.get("source.address", ())
        if not addresses:
            return _all_under(facts.get("network", ()), self.networks)
        globs = [p for p in self.networks if "/" not in p or "*" in p]
        for text in addresses:
            if globs and any(fnmatchcase(text, g) for g in globs):
                continue
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                return False
            if not any(address in cidr for cidr in getattr(self, "_cidrs", ())):
                return False
        return True


def _all_under(values, patterns: list[str]) -> bool:
    """Every value matches one of the patterns; no values is no match (nothing to vouch for)."""
    return bool(values) and all(any(fnmatchcase(v, p) for p in patterns) for v in values)


@dataclass
class ExceptionEntry:
    id: str
    match: ExceptionMatch
    owner: str
    reason: str
    expires: Any = None
    long_lived: bool = False

    def validate(self) -> None:
        if not _ID.match(self.id or ""):
            raise ValueError(f"id {self.id!r}: letters, digits and ._:- only, at most 80 characters "
                             "(it is the label of the suppressed-events metric)")
        if not self.owner.strip() or not self.reason.strip():
            raise ValueError(f"exception {self.id}: owner and reason must not be empty")
        self.expires_at = expiry_of(self.expires)
        self.expires_ns = int(self.expires_at.timestamp() * 1e9)
        horizon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=MAX_DAYS)
        if self.expires_at > horizon and not self.long_lived:
            raise ValueError(f"exception {self.id}: expires more than {MAX_DAYS} days from now "
                             f"({self.expires_at.date()}); say long_lived: true if that is meant")

    def applies(self, event: ConvergenceEvent) -> bool:
        return event.time_ns < self.expires_ns and self.match.holds(event)


@dataclass
class ExceptionList:
    exceptions: list[ExceptionEntry] = field(default_factory=list)

    def validate(self) -> None:
        if len(self.exceptions) > MAX_ENTRIES:
            raise ValueError(f"at most {MAX_ENTRIES} exceptions")
        seen = set()
        for entry in self.exceptions:
            if entry.id in seen:
                raise ValueError(f"exception id {entry.id!r} is used twice")
            seen.add(entry.id)

    def matching(self, event: ConvergenceEvent) -> ExceptionEntry | None:
        for entry in self.exceptions:
            if entry.applies(event):
                return entry
        return None

    def split(self, events) -> tuple[list[ConvergenceEvent], list[tuple[ConvergenceEvent, ExceptionEntry]]]:
        """(events to send, (event, exception) pairs kept back)."""
        kept, suppressed = [], []
        for event in events:
            entry = self.matching(event) if self.exceptions else None
            if entry is None:
                kept.append(event)
            else:
                suppressed.append((event, entry))
        return kept, suppressed

    def expired(self, now: dt.datetime | None = None) -> list[ExceptionEntry]:
        now = now or dt.datetime.now(dt.timezone.utc)
        return [e for e in self.exceptions if e.expires_at <= now]


def load_exceptions(path: str) -> ExceptionList:
    """Read an exceptions file; a malformed one raises ConfigError naming file, line and problem."""
    try:
        return load_file(path, ExceptionList)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc), path) from None


def draft(event: dict, today: dt.date | None = None, days: int = 30) -> str:
    """A narrow exception for one event, as YAML to review and merge: the event's identity and
    rule exactly, its facets, networks, actions and targets as lists (so that anything new in a
    later event still raises it), expiring in ``days``. ``event``: the event's attributes
    (``nhi.identity.id``, ``security_rule.name``, ``nhi.convergence.findings``...). Owner and
    reason are left empty: the file does not load until someone fills them in."""
    import yaml

    today = today or dt.datetime.now(dt.timezone.utc).date()
    identity = str(event.get("nhi.identity.id") or "")
    if not identity:
        raise ValueError("the event has no nhi.identity.id: is it a convergence event?")
    convergence = str(event.get("nhi.convergence.id") or "")
    kind = identity.split(":", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", identity.split(":", 1)[-1].rsplit("/", 1)[-1])[:40].strip("-")
    match: dict = {"identity": identity}
    if kind in IDENTITY_KINDS:
        match["kind"] = kind
    if event.get("security_rule.name"):
        match["rule"] = str(event["security_rule.name"])
    facets = sorted({str(f).split(":", 1)[0] for f in event.get("nhi.convergence.findings") or []})
    # A list the event could not hold whole (more values than it keeps) never matches value by
    # value: left out, so that the exception matches the event it was drafted from.
    overflow = set(event.get("nhi.convergence.overflow") or ())
    left_out = []
    for name, values, facts in (("facets", facets, ()), ("networks", event.get("nhi.convergence.networks"),
                                                         ("network", "source.address")),
                                ("actions", event.get("nhi.convergence.actions"), ("action",)),
                                ("targets", event.get("nhi.convergence.targets"), ("target",))):
        values = [str(v) for v in values or [] if v]
        if values and overflow.intersection(facts):
            left_out.append(name)
        elif values:
            match[name] = sorted(set(values))
    entry = {
        "id": f"{kind}-{stem or 'identity'}-{convergence[:8] or today.isoformat()}",
        "match": match,
        "owner": str(event.get("nhi.identity.owner") or ""),
        "reason": "",
        "expires": (today + dt.timedelta(days=days)).isoformat(),
    }
    header = ("# Drafted from convergence event " + (convergence or "(no id)") + ". Fill in owner and reason\n"
              "# (the file does not load without them), narrow or widen the match with care, then run\n"
              "# `nhi-sim bench --exceptions FILE` before merging: it fails if this hides an attack.\n"
              + "".join(f"# match.{name}: the event saw more {name} than it keeps, so none is listed\n"
                        for name in left_out))
    return header + yaml.safe_dump({"exceptions": [entry]}, sort_keys=False, allow_unicode=True, width=100)
