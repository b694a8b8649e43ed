"""Scoring convergence events against the labels kept beside the replay.

An attack is detected when an event names one of its identities with evidence inside its window
(from its start to six hours after its end). Any event on an identity that is not part of an
attack, at any time, is a false positive; a benign scenario is "detected" (a failure) when one of
its identities has such an event. Precision counts distinct (identity, incident) pairs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .scenarios import Label

GRACE_NS = 6 * 3600 * 10**9


@dataclass
class Event:
    identity_id: str
    convergence_id: str
    time_ns: int
    first_seen_ns: int
    score: float
    body: str
    findings: list[str]
    rule: str
    related: list[str]
    version: int = 1
    severity: str = ""
    references: list[str] = field(default_factory=list)   # ATT&CK and OWASP NHI ids of its rule


@dataclass
class ScenarioScore:
    name: str
    kind: str
    detected: bool
    time_to_detect_s: float | None
    events: int
    identities: list[str]
    explanations: list[str] = field(default_factory=list)


@dataclass
class Score:
    scenarios: list[ScenarioScore]
    recall: float
    precision: float
    false_positive_identities: list[str]
    false_positives_per_1000_identity_days: float
    events: int
    identity_days: float

    def to_json(self) -> dict:
        return asdict(self)


def attack_windows(labels: list[Label]) -> dict[str, list[tuple[int, int]]]:
    """identity -> the windows (start, end + grace) of the attacks on it."""
    windows: dict[str, list[tuple[int, int]]] = {}
    for label in labels:
        if label.kind == "attack":
            for ident in label.identity_ids:
                windows.setdefault(ident, []).append((label.start_ns, label.end_ns + GRACE_NS))
    return windows


def in_attack_window(e: Event, windows: dict[str, list[tuple[int, int]]]) -> bool:
    return any(lo <= e.time_ns <= hi for lo, hi in windows.get(e.identity_id, ()))


def score(events: list[Event], labels: list[Label], identities: int, days: float) -> Score:
    windows = attack_windows(labels)

    rows = []
    for label in labels:
        mine = [e for e in events if e.identity_id in label.identity_ids]
        if label.kind == "attack":
            hits = [e for e in mine if label.start_ns <= e.time_ns <= label.end_ns + GRACE_NS]
        else:
            hits = [e for e in mine if not in_attack_window(e, windows)]
        first = min((e.time_ns for e in hits), default=None)
        ttd = round((first - label.start_ns) / 1e9, 1) if first is not None and label.kind == "attack" else None
        latest = {}
        for e in sorted(hits, key=lambda e: e.time_ns):
            latest[e.convergence_id] = e
        rows.append(ScenarioScore(label.scenario, label.kind, bool(hits), ttd, len(hits), label.identity_ids,
                                  [f"{e.identity_id}: {e.body}" for e in latest.values()]))
    attacks = [r for r in rows if r.kind == "attack"]
    recall = sum(r.detected for r in attacks) / len(attacks) if attacks else 1.0
    incidents = {(e.identity_id, e.convergence_id): in_attack_window(e, windows) for e in events}
    true = sum(1 for ok in incidents.values() if ok)
    precision = true / len(incidents) if incidents else 1.0
    fp_identities = sorted({e.identity_id for e in events if not in_attack_window(e, windows)})
    identity_days = identities * days
    return Score(rows, round(recall, 4), round(precision, 4), fp_identities,
                 round(len(fp_identities) / identity_days * 1000, 3) if identity_days else 0.0,
                 len(events), identity_days)
