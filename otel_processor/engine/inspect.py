"""One identity's baseline as the engine holds it, in plain data: what ``state show`` prints and
what an OCSF event gives as the baselines behind its findings.

The engine keeps known values as 32-bit hashes (bounded memory, and no copy of what a sender
wrote), so the baseline says how many networks, clients, actions and targets an identity is known
to use, not which: the names are in the telemetry, found by the evidence ids of an event.
"""

from __future__ import annotations

import datetime as dt

from .detectors import DIMENSIONS
from .roster import PROBATION

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_PLURAL = {"action": "actions", "target": "targets", "network": "networks", "user_agent": "clients",
           "country": "countries"}


def iso(ns: int) -> str | None:
    """Event time as RFC 3339 UTC (what a reader compares with the telemetry), None for 0."""
    if not ns:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _bits(mask: int, names) -> list:
    return [name for i, name in enumerate(names) if (mask >> i) & 1]


def baseline_counts(p) -> dict[str, int]:
    """How many distinct values of each dimension the identity is known to use."""
    return {_PLURAL[d]: len(values) for d, values in zip(DIMENSIONS, p.new_values.values)}


def describe(engine, p, now_ns: int | None = None) -> dict:
    """Everything the engine holds for one identity (``p``: its Profile), as JSON-ready data.
    ``now_ns``: the event time to compute trust at (default: the identity's last record)."""
    ident = p.identity
    now_ns = now_ns or p.last_ns
    volume, failures = p.volume, p.failures
    case = p.case
    incident = case.incident if case is not None else None
    group = ident.group or f"kind:{ident.kind}"
    return {
        "identity": {"id": ident.id, "kind": ident.kind, "principal": ident.principal, "source": ident.source,
                     "owner": ident.owner, "environment": ident.environment, "group": group,
                     "cataloged": ident.cataloged},
        "first_seen": iso(p.first_ns),
        "last_seen": iso(p.last_ns),
        "records": p.count,
        "last_success": iso(p.last_success_ns),
        "tier": "probation" if p.tier == PROBATION else "settled",
        "known": baseline_counts(p),
        "first_network": p.new_values.first_network,
        "networks_seen": p.new_values.networks_seen,
        "volume": {"window_s": engine.config.window_s, "windows_seen": volume.windows_seen,
                   "max_records": volume.max_count, "max_volume": volume.max_volume,
                   "max_distinct_targets": volume.max_distinct},
        "failures": {"windows_seen": failures.windows_seen, "max_failures": failures.max_failures},
        "schedule": {"hours_utc": _bits(int(p.schedule.hours_mask), range(24)),
                     "weekdays": _bits(int(p.schedule.days_mask), WEEKDAYS)},
        "peers": {"group": group, "members": engine.peer_count(group)},
        "trust": engine.trust_of(p, now_ns),
        "open_case": None if case is None else {
            "score": round(case.score, 4),
            "findings": {k: v[0].reason for k, v in case.facets.items()},
            "first_finding": iso(case.first_ns),
        },
        "incident": None if incident is None else {
            "convergence_id": incident.id, "version": incident.version, "opened": iso(incident.opened_ns),
            "last": iso(incident.last_ns), "facets": list(incident.emitted_facets),
        },
    }
