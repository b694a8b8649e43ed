"""Fusing one identity's findings into one score, one incident and one trust value.

Formula (documented in docs/detection.md): over the last ``correlation_window_s`` of event time keep
each facet's strongest finding; its effective score is ``score * peer_discount`` when enough
peers made the same change, else ``score``. Then

    combined  = 1 - prod(1 - effective_f)                 (noisy-OR: independent evidence adds up)
    agreement = min(1, 0.6 + 0.2 * (facets - 1) + 0.1 * (signals - 1))
    score     = combined * agreement

counting facets with an effective score of at least 0.2 and the distinct signals (auth, email,
iam, ci, agent, app) they came from; agreement is 1 when one of them is a first-sight fact
(``first_sight.*``: wrong for the kind of identity, it needs no second opinion). One weak facet
stays well under the alert threshold; two independent facets, or a single overwhelming one (a
20x breadth sweep), cross it. Trust is ``1 - score``, recovering with a half-life of quiet event
time.
"""

from __future__ import annotations

import hashlib

from ..model import FACT_OVERFLOW, Finding

MIN_FACET = 0.2
DECISIVE = "first_sight."  # facets that stand alone (engine/first_sight.py)
MAX_EVIDENCE = 16
MAX_RELATED = 8
MAX_FACT_VALUES = 8
# What an event says in fields beside its sentence (outputs/events.py), gathered from the records
# that gave findings: the latest values of each, at most MAX_FACT_VALUES.
FACT_NAMES = ("source.address", "user_agent.original", "geo.country.iso_code", "network", "action", "target",
              "credential", "record_id")


class Incident:
    __slots__ = ("id", "opened_ns", "version", "emitted_score", "emitted_facets", "last_ns")

    def __init__(self, incident_id: str, opened_ns: int):
        self.id = incident_id
        self.opened_ns = opened_ns
        self.version = 0
        self.emitted_score = 0.0
        self.emitted_facets: list[str] = []
        self.last_ns = opened_ns


class Case:
    """Everything the correlator holds for one identity with recent findings."""

    __slots__ = ("facets", "evidence", "related", "score", "last_finding_ns", "incident", "first_ns", "classes",
                 "ceiling_score", "facts")

    def __init__(self) -> None:
        # facet -> [finding, peer_group, peer_key]
        self.facets: dict[str, list] = {}
        self.evidence: list[tuple[int, str]] = []
        self.related: list[str] = []
        self.score = 0.0
        self.last_finding_ns = 0
        self.incident: Incident | None = None
        self.first_ns = 0
        self.classes: list[str] = []  # action classes of the evidence, for rule selection
        # ceiling() when the findings last changed; not state (recomputed after a restore).
        self.ceiling_score = 1.0
        self.facts: dict[str, list[str]] = {}  # FACT_NAMES -> values, latest last

    def add(self, finding: Finding, peer: tuple | None) -> None:
        current = self.facets.get(finding.detector)
        if current is None or finding.score >= current[0].score:
            self.facets[finding.detector] = [finding, peer[0] if peer else None, peer[1] if peer else None]
        if not self.first_ns or (finding.time_ns < self.first_ns and self.incident is None):
            self.first_ns = finding.time_ns  # the earliest evidence names the incident, in any arrival order
        self.last_finding_ns = max(self.last_finding_ns, finding.time_ns)
        if finding.trace_id:
            tid = finding.trace_id.hex()
            for _, known in self.evidence:
                if known == tid:
                    break
            else:
                self.evidence.append((finding.time_ns, tid))
                if len(self.evidence) > MAX_EVIDENCE:
                    del self.evidence[0]

    def note_facts(self, values: tuple) -> None:
        """``values``: one per FACT_NAMES (None where the record had none)."""
        facts = self.facts
        for name, value in zip(FACT_NAMES, values):
            if value:
                known = facts.get(name)
                if known is None:
                    facts[name] = [value]
                elif known[-1] != value:
                    if value in known:
                        known.remove(value)
                    known.append(value)
                    if len(known) > MAX_FACT_VALUES:
                        del known[0]
                        facts[name + FACT_OVERFLOW] = ["more values than kept"]

    def note_class(self, action_class: str) -> None:
        if action_class not in self.classes and len(self.classes) < 8:
            self.classes.append(action_class)

    def relate(self, identities) -> None:
        for other in identities:
            if other not in self.related and len(self.related) < MAX_RELATED:
                self.related.append(other)

    def prune(self, now_ns: int, window_ns: int) -> None:
        since = now_ns - window_ns
        for facet in [k for k, v in self.facets.items() if v[0].time_ns < since]:
            del self.facets[facet]
        if not self.facets:
            self.first_ns = 0

    def evaluate(self, effective: dict[str, float]) -> float:
        """Score from the effective facet scores (after peer discount)."""
        self.score = self.fuse(effective)
        return self.score

    def ceiling(self) -> float:
        """The score with no peer discount: an upper bound of ``evaluate`` until findings change."""
        return self.fuse({k: v[0].score for k, v in self.facets.items()})

    def fuse(self, scores: dict[str, float]) -> float:
        strong = [k for k, v in scores.items() if v >= MIN_FACET]
        if not strong:
            return max(scores.values(), default=0.0) * 0.6
        remaining = 1.0
        for v in scores.values():
            remaining *= 1.0 - v
        signals = {self.facets[k][0].signal for k in strong}
        if any(k.startswith(DECISIVE) for k in strong):
            agreement = 1.0  # a fact wrong for the kind of identity needs no second opinion
        else:
            agreement = min(1.0, 0.6 + 0.2 * (len(strong) - 1) + 0.1 * (len(signals) - 1))
        return max(0.0, min(1.0, (1.0 - remaining) * agreement))


def incident_id(identity_id: str, first_ns: int) -> str:
    """Deterministic: the same input gives the same id, across restarts and replicas."""
    return hashlib.sha256(f"{identity_id}|{first_ns}".encode()).hexdigest()[:24]


def finding_state(f: Finding) -> list:
    return [f.detector, f.score, f.reason, f.signal, f.time_ns, f.trace_id.hex(), f.span_id.hex()]


def finding_from_state(s: list) -> Finding:
    return Finding(s[0], s[1], s[2], s[3], s[4], bytes.fromhex(s[5]), bytes.fromhex(s[6]))


def case_state(c: Case) -> list:
    inc = c.incident
    return [
        [[k, finding_state(v[0]), v[1], list(v[2]) if v[2] else None] for k, v in c.facets.items()],
        c.evidence, c.related, c.score, c.last_finding_ns, c.first_ns, c.classes,
        [inc.id, inc.opened_ns, inc.version, inc.emitted_score, inc.emitted_facets, inc.last_ns] if inc else None,
        c.facts,
    ]


def case_from_state(s: list) -> Case:
    c = Case()
    for k, f, group, key in s[0]:
        c.facets[k] = [finding_from_state(f), group, tuple(key) if key else None]
    c.evidence = [tuple(e) for e in s[1]]
    c.related, c.score, c.last_finding_ns, c.first_ns, c.classes = s[2], s[3], s[4], s[5], s[6]
    if s[7]:
        inc = Incident(s[7][0], s[7][1])
        inc.version, inc.emitted_score, inc.emitted_facets, inc.last_ns = s[7][2:]
        c.incident = inc
    if len(s) > 8 and isinstance(s[8], dict):  # snapshots before event facts have none
        c.facts = {k: [str(v) for v in vs][-MAX_FACT_VALUES:] for k, vs in s[8].items()
                   if k.removesuffix(FACT_OVERFLOW) in FACT_NAMES and isinstance(vs, list)}
    return c
