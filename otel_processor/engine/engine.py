"""The behaviour engine: one ``observe`` per record, events when an identity's behaviour converges
on abuse.

Per observation: features once; each per-identity detector scores then learns; the catalog and
chain detectors look across identities; findings go to the identity's ``Case`` (correlator), which
is re-scored with the peer discount applied *now* (so a change that peers make shortly after this
identity is still discounted); a score over the threshold with a successful call in the window
opens or updates the identity's incident and emits a ``ConvergenceEvent``.
"""

from __future__ import annotations

import heapq
import logging
import threading

from ..model import IDENTITY_KINDS, NEUTRAL_VERDICT, ConvergenceEvent, Finding, Identity, Observation, Verdict
from .config import EngineConfig
from .credentials import CredentialBook, CredentialFacts
from .correlator import MIN_FACET, Case, Incident, case_from_state, case_state, incident_id
from .detectors import (
    FailureBurstDetector,
    NewValueDetector,
    ScheduleDetector,
    SequenceDetector,
    VolumeDetector,
    has_value,
)
from .features import Features, RuleBook, features_of
from .first_sight import FirstSight, FirstSightRules, FirstSightState
from .inspect import baseline_counts
from .links import ChainTracker, CredentialTracker, GrantTracker, catalog_findings
from .peers import PeerRegistry
from .roster import PROBATION, Roster
from .state import read_snapshot, write_snapshot

log = logging.getLogger(__name__)

GLOBAL = "*"
_NEUTRAL = NEUTRAL_VERDICT
_REGISTER_EVERY_NS = 3_600_000_000_000
_CHAIN_SIGNALS = frozenset({"email", "iam"})


def _facts_of(f: Features) -> tuple:
    """The record's values an event gives as fields (correlator.FACT_NAMES, in that order)."""
    o = f.obs
    details = o.details
    credential = record_id = None
    if details:
        credential = details.get("nhi.credential.id")
        if not o.trace_id:  # a record without a trace is found again by its source's own id
            record_id = details.get("nhi.record.id")
    return (o.source_address, o.user_agent, o.country, f.network, o.action, o.target, credential, record_id)


def _lower_first(text: str) -> str:
    """"Bulk secret..." -> "bulk secret...", but "AI agent..." stays."""
    return text if text[1:2].isupper() else text[:1].lower() + text[1:]


# Facets a release, a new feature or a schedule change gives many identities at once.
SOFT_FACETS = frozenset({"new_value.action", "new_value.target", "schedule", "sequence"})


class Profile:
    """All per-identity state. Bounded: every member has a fixed cap."""

    __slots__ = ("identity", "first_ns", "last_ns", "count", "last_success_ns", "registered_ns",
                 "new_values", "volume", "failures", "schedule", "sequence", "case", "drop", "drop_ns", "tier",
                 "first_sight")

    def __init__(self, identity: Identity, t: int):
        self.identity = identity
        self.first_ns = t
        self.last_ns = t
        self.count = 0
        self.last_success_ns = 0
        self.registered_ns = 0
        self.new_values = NewValueDetector()
        self.volume = VolumeDetector()
        self.failures = FailureBurstDetector()
        self.schedule = ScheduleDetector()
        self.sequence = SequenceDetector()
        self.case: Case | None = None
        # Trust = 1 - drop * 0.5 ** ((t - drop_ns) / half-life): the last drop, recovering.
        self.drop = 0.0
        self.drop_ns = 0
        self.tier = PROBATION  # roster tier (engine/roster.py)
        self.first_sight: FirstSightState | None = None  # made when a first-sight signal needs state

    def state(self) -> list:
        i = self.identity
        return [
            [i.id, i.kind, i.principal, i.source, i.owner, i.environment, i.group,
             list(i.expected_actions), list(i.expected_targets), list(i.expected_networks), i.cataloged],
            self.first_ns, self.last_ns, self.count, self.last_success_ns, self.registered_ns,
            self.new_values.state(), self.volume.state(), self.failures.state(), self.schedule.state(),
            self.sequence.state(), case_state(self.case) if self.case else None, self.drop, self.drop_ns,
            self.tier, self.first_sight.state() if self.first_sight is not None else None,
        ]

    @classmethod
    def from_state(cls, s: list) -> "Profile":
        i = s[0]
        ident = Identity(i[0], i[1], i[2], i[3], i[4], i[5], i[6], tuple(i[7]), tuple(i[8]), tuple(i[9]),
                         bool(i[10]) if len(i) > 10 else False)
        p = cls.__new__(cls)  # every field set below: no detector built only to be replaced
        p.identity = ident
        p.first_ns, p.last_ns, p.count, p.last_success_ns, p.registered_ns = s[1], s[2], s[3], s[4], s[5]
        p.new_values = NewValueDetector.from_state(s[6])
        p.volume = VolumeDetector.from_state(s[7])
        p.failures = FailureBurstDetector.from_state(s[8])
        p.schedule = ScheduleDetector.from_state(s[9])
        p.sequence = SequenceDetector.from_state(s[10])
        p.case = case_from_state(s[11]) if s[11] else None
        p.drop, p.drop_ns = s[12], s[13]
        p.tier = s[14] if len(s) > 14 else 1  # snapshots before tiers held settled baselines
        p.first_sight = FirstSightState.from_state(s[15]) if len(s) > 15 and s[15] else None
        return p


def peer_key(finding: Finding, f: Features, group: str) -> tuple[str, tuple] | None:
    """Which shared change a finding stands for, and in whose population to look for it."""
    facet = finding.detector
    if facet == "new_value.network":
        return group, ("network", f.network_h)
    if facet == "new_value.user_agent":
        return group, ("ua", f.ua_h)
    if facet == "new_value.country":
        return group, ("country", f.country_h)
    if facet == "new_value.action":
        return GLOBAL, ("action", f.action_h)
    if facet == "new_value.target":
        return GLOBAL, ("target", f.target_h)
    if facet == "volume":
        return group, ("volume",)
    if facet == "failure_burst":
        return GLOBAL, ("fail", f.target_h if f.target_h is not None else f.action_h)
    if facet == "schedule":
        return group, ("hour", f.hour)
    if facet == "sequence":
        return group, ("class", f.action_class)
    return None  # catalog and chain findings are never a group change


class Engine:
    def __init__(self, config: EngineConfig | None = None, catalog=None, metrics=None):
        self.config = config or EngineConfig()
        self.catalog = catalog
        self.rules = RuleBook.load(self.config.rules_file)
        self._lock = threading.RLock()
        self._roster = Roster(self.config.max_identities, self.config.probation_share,
                              int(self.config.protect_idle_s * 1e9))
        self._peers = PeerRegistry(int(self.config.peer_window_s * 1e9))
        self._chain = ChainTracker(int(self.config.chain_window_s * 1e9))
        first_sight_rules = FirstSightRules.from_data(self.rules.first_sight, self.rules.path)
        _warn_if_stale(first_sight_rules)
        self._credentials = CredentialTracker(int(self.config.credential_window_s * 1e9),
                                              int(first_sight_rules.session_spread_s * 1e9),
                                              first_sight_rules.session_spread_networks)
        self._credential_book = CredentialBook()
        self._first_sight = FirstSight(first_sight_rules)
        self._grants = GrantTracker(first_sight_rules)
        self._events: list[ConvergenceEvent] = []
        self._pending: list[tuple[int, str]] = []  # (decide at, identity): held incidents
        c = self.config
        self._caps = (c.max_actions, c.max_targets, c.max_networks, c.max_user_agents, c.max_countries)
        self._warmup_ns = int(c.warmup_s * 1e9)
        self._backfill_ns = int(c.backfill_after_s * 1e9)
        self._window_ns = int(c.correlation_window_s * 1e9)
        self._quiet_ns = int(c.incident_quiet_s * 1e9)
        self._half_life_ns = c.trust_half_life_s * 1e9
        self._confirm_ns = int(c.novelty_confirm_s * 1e9)

    def reload_rules(self, path: str | None = None) -> None:
        """Swaps in detection content read anew (SIGHUP); raises ConfigError and keeps the old
        content when the file is wrong. Baselines, cases and links are kept."""
        from .features import _ACTIONS, _CLASS_CACHE

        book = RuleBook.load(path or self.config.rules_file)
        first_sight_rules = FirstSightRules.from_data(book.first_sight, book.path)
        _warn_if_stale(first_sight_rules)
        with self._lock:
            self.rules = book
            self._first_sight.use_rules(first_sight_rules)
            self._grants.use_rules(first_sight_rules)
            self._credentials.spread_ns = int(first_sight_rules.session_spread_s * 1e9)
            self._credentials.spread_networks = first_sight_rules.session_spread_networks
            _ACTIONS.clear()  # memos keyed by the old book's id, which a new book may reuse
            _CLASS_CACHE.clear()

    @property
    def identities_tracked(self) -> int:
        return len(self._roster)

    @property
    def evictions(self) -> int:
        return self._roster.evictions

    @property
    def evictions_by_tier(self) -> dict[str, int]:
        return dict(self._roster.evicted)

    # -- the hot path --------------------------------------------------------------------------
    def observe(self, obs: Observation) -> Verdict:
        with self._lock:
            return self._observe(obs)

    @property
    def lock(self) -> threading.RLock:
        """Held by a host that feeds a whole batch through ``observe_unlocked``."""
        return self._lock

    def observe_unlocked(self, obs: Observation) -> Verdict:
        """``observe`` for a caller already holding ``lock`` (one acquisition per batch)."""
        return self._observe(obs)

    def _profile(self, obs: Observation) -> Profile:
        ident = obs.identity
        p = self._roster.get(ident.id)
        if p is None:
            p = Profile(ident, obs.time_ns)
            self._roster.admit(ident.id, p, ident.cataloged)
        elif p.identity is not ident and p.identity != ident:
            p.identity = ident  # catalog changes take effect
        return p

    def peek(self, identity_id: str, t: int) -> Verdict:
        """The verdict a record of this identity gets without being learnt from (a retried batch
        the engine has already seen): its current trust, nothing more."""
        p = self._roster.peek(identity_id)
        if p is None or not p.drop:
            return _NEUTRAL
        trust = self._trust(p, t)
        return Verdict(trust) if trust < 0.999 else _NEUTRAL

    def _observe(self, obs: Observation) -> Verdict:
        c = self.config
        t = obs.time_ns
        if self._pending and self._pending[0][0] <= t:
            self._check_pending(t)
        p: Profile = self._profile(obs)
        f: Features = features_of(obs, self.rules, c.window_s)
        if t < p.last_ns - self._backfill_ns:
            return self._backfill(p, f, t)
        group = obs.identity.group or f"kind:{obs.identity.kind}"
        if t - p.registered_ns >= _REGISTER_EVERY_NS:
            self._peers.seen(group, obs.identity.id, t)
            self._peers.seen(GLOBAL, obs.identity.id, t)
            p.registered_ns = t
        age = t - p.first_ns
        warmed = age >= self._warmup_ns and p.count >= c.warmup_records

        # First-sight signals read the baseline as it stood before this record.
        first = self._first_sight_findings(p, f, warmed) if obs.identity.kind != "human" else None
        routine = obs.identity.kind == "oauth_app" and warmed and has_value(p.new_values.values[0], f.action_h)
        # Each detector's update is its score_one and learn_one in one call, None when quiet.
        findings = p.new_values.update(f, age, warmed, c, self._caps) or []
        if first:
            findings += first
        for found in (p.schedule.update(f, age, c), p.sequence.update(f, warmed),
                      p.volume.update(f, c), p.failures.update(f, c)):
            if found is not None:
                findings.append(found)
        ident = obs.identity
        if ident.expected_networks or ident.expected_actions or ident.expected_targets:
            findings += catalog_findings(f)
        details = obs.details
        related: tuple[str, ...] = ()
        if details:
            if "aws.session" in details or "aws.access_key.id" in details:
                findings += self._credentials.observe(f)
            if "nhi.credential.id" in details or "nhi.credential.created" in details:
                self._credential_facts(obs, f)
            if "nhi.identity.related" in details:
                related = tuple(details["nhi.identity.related"].split(","))
        elsewhere = None
        if obs.signal in _CHAIN_SIGNALS or ident.kind == "oauth_app":
            if ident.kind == "oauth_app" and details and "nhi.identity.alias" in details:
                findings += self._grants.alias(details["nhi.identity.alias"], ident.principal)
                self._chain.alias(details["nhi.identity.alias"], ident.principal)
            chain_findings, linked, elsewhere = self._chain.observe(obs)
            findings += chain_findings
            related += linked
            if ident.kind == "oauth_app":
                findings += self._grants.read(obs, f, routine)
            elif details and self._grants.is_grant(obs):
                elsewhere = elsewhere + self._grants.grant(obs)

        p.count += 1
        if t > p.last_ns:
            p.last_ns = t
        if p.tier == PROBATION and warmed:
            self._roster.graduate(ident.id, p, t)
        if f.succeeded:
            p.last_success_ns = max(p.last_success_ns, t)
        if elsewhere:
            self._elsewhere(elsewhere)
        case = p.case
        # Without new findings a case can only reach a decision if its undiscounted score could.
        if not findings and (case is None or (case.incident is None
                                              and case.ceiling_score < c.alert_threshold)):
            if not p.drop:
                return _NEUTRAL
            trust = self._trust(p, t)
            if trust >= 0.999:
                p.drop = 0.0
                return _NEUTRAL
            return Verdict(trust)
        return self._correlate(p, f, findings, related, group, t, obs.trace_id, obs.span_id)

    def _backfill(self, p: Profile, f: Features, t: int) -> Verdict:
        """A record far older than its identity's latest (a week of logs loaded again, a late
        export): its values join the identity's history, as if learnt in warm-up, and it is
        judged against nothing, so replaying old logs into a warm processor raises nothing."""
        p.new_values.update(f, t - p.first_ns, False, self.config, self._caps)
        p.count += 1
        if t < p.first_ns:
            p.first_ns = t  # the history now reaches back further
        if not p.drop:
            return _NEUTRAL
        trust = self._trust(p, p.last_ns)
        return Verdict(trust) if trust < 0.999 else _NEUTRAL

    def _elsewhere(self, found: list) -> None:
        """Findings a record gave about other identities (a late record completing a chain):
        each goes to that identity's case, at the finding's own event time. An identity not seen
        yet has no case to add to; its own records will find the link."""
        for ident_id, finding, related in found:
            p = self._roster.peek(ident_id)
            if p is not None:
                group = p.identity.group or f"kind:{p.identity.kind}"
                self._correlate(p, None, [finding], related, group, finding.time_ns, finding.trace_id,
                                finding.span_id)

    def _first_sight_findings(self, p: Profile, f: Features, warmed: bool) -> list[Finding] | None:
        return self._first_sight.update(p, f, p.new_values.values, warmed, self._credential_book.get)

    def _credential_facts(self, obs: Observation, f: Features) -> None:
        details = obs.details
        created = details.get("nhi.credential.created")
        if created:
            issued_by = details.get("nhi.credential.issued_by") or obs.identity.id
            self._credential_book.issued(created, obs.time_ns, details.get("nhi.credential.issued_to") or obs.identity.id,
                                         issued_by, f.network)
            late = self._first_sight.issued_late(created, obs.time_ns, issued_by, f.network)
            if late:
                self._elsewhere(late)
        used = details.get("nhi.credential.id")
        if used and used != created:
            self._credential_book.used(used, obs.time_ns, obs.identity.id, f.network, f.ua)

    def credential(self, credential_id: str) -> CredentialFacts | None:
        """What is known about one credential (issuance, first use, networks, clients)."""
        with self._lock:
            return self._credential_book.get(credential_id)

    def _trust(self, p: Profile, t: int) -> float:
        drop = p.drop * 0.5 ** (max(0, t - p.drop_ns) / self._half_life_ns)
        return round(max(0.0, min(1.0, 1.0 - drop)), 4)

    # -- correlation and incidents -------------------------------------------------------------
    def _correlate(self, p: Profile, f, findings: list[Finding], related, group: str, t: int,
                   trace_id: bytes, span_id: bytes) -> Verdict:
        """``f``: the features of the record the findings came from, or None for findings a
        record gave about another identity (no peer key, no action class)."""
        c = self.config
        case = p.case
        if case is None:
            case = p.case = Case()
        ident_id = p.identity.id
        # Expired facets go first, so that a case whose evidence all expired starts afresh
        # (its first_ns, hence a later incident's id, is that of the new evidence).
        case.prune(t, self._window_ns)
        for finding in findings:
            key = peer_key(finding, f, group) if f is not None else None
            if key is not None:
                self._peers.report(key[0], key[1], ident_id, t)
            case.add(finding, key)
        if findings and f is not None:
            case.note_class(f.action_class)
            case.note_facts(_facts_of(f))
        if findings and related:
            case.relate(related)
        case.ceiling_score = case.ceiling()
        effective = self._effective(case, t)
        score = case.evaluate(effective)
        incident = case.incident
        if incident is not None and t - incident.last_ns > self._quiet_ns:
            case.incident = incident = None
        acted = p.last_success_ns and t - p.last_success_ns <= self._window_ns
        if score >= c.alert_threshold and acted and p.identity.kind in c.event_kinds:
            if incident is None and self._must_confirm(case, effective, t):
                heapq.heappush(self._pending, (case.first_ns + self._confirm_ns, ident_id))
            else:
                incident = self._decide(p, case, t, trace_id, span_id, effective)
        if not case.facets and case.incident is None:
            p.case = None
        # Trust drops to 1 - score when findings arrive and recovers with quiet event time.
        if findings and score > p.drop * 0.5 ** (max(0, t - p.drop_ns) / self._half_life_ns):
            p.drop, p.drop_ns = score, t
        trust = self._trust(p, t)
        anomalies = tuple(sorted({fd.detector for fd in findings}))
        conv_id = incident.id if (incident is not None and findings) else None
        if not anomalies and trust >= 0.999:
            return _NEUTRAL
        return Verdict(trust, anomalies, conv_id)

    def _effective(self, case: Case, t: int) -> dict[str, float]:
        c = self.config
        out = {}
        for facet, (finding, group, key) in case.facets.items():
            score = finding.score
            if key is not None:
                made, active = self._peers.shared_by(group, key, t)
                if group == GLOBAL:
                    shared = made >= c.peer_min_identities
                else:
                    shared = made >= c.peer_min_identities and made >= c.peer_share * active
                if shared:
                    score *= c.peer_discount
            out[facet] = score
        return out

    def _must_confirm(self, case: Case, effective: dict[str, float], t: int) -> bool:
        """Evidence made only of "what" novelty (new actions or targets, an unusual hour, a new
        action class) is what a release or a schedule change gives a whole fleet at once. Such an
        incident waits ``novelty_confirm_s`` after its first finding, so that peers following
        within that time discount it; where/who/volume evidence is never held back."""
        if t >= case.first_ns + self._confirm_ns:
            return False
        strong = [k for k, v in effective.items() if v >= MIN_FACET]
        return all(k in SOFT_FACETS for k in strong)

    def _check_pending(self, now: int) -> None:
        """Decide held incidents whose confirmation time has passed (event time ``now``)."""
        pending = self._pending
        while pending and pending[0][0] <= now:
            _, ident_id = heapq.heappop(pending)
            p = self._roster.peek(ident_id)
            case = p.case if p is not None else None
            if case is None or case.incident is not None or not case.facets:
                continue
            effective = self._effective(case, now)
            score = case.evaluate(effective)
            acted = p.last_success_ns and now - p.last_success_ns <= self._window_ns
            if score >= self.config.alert_threshold and acted and p.identity.kind in self.config.event_kinds:
                # Stamped with the decision's event time (honest time to detect); the trace
                # and span are those of the latest evidence.
                last = max((v[0] for v in case.facets.values()), key=lambda fd: fd.time_ns)
                self._decide(p, case, now, last.trace_id, last.span_id, effective)

    def _decide(self, p: Profile, case: Case, t: int, trace_id: bytes, span_id: bytes,
                effective: dict[str, float]) -> Incident:
        c = self.config
        incident = case.incident
        facets = sorted(k for k, v in effective.items() if v >= MIN_FACET)
        if incident is None:
            incident = case.incident = Incident(incident_id(p.identity.id, case.first_ns or t), t)
        incident.last_ns = t
        new_facets = [x for x in facets if x not in incident.emitted_facets]
        if incident.version and case.score < incident.emitted_score + c.update_step and not new_facets:
            return incident
        incident.version += 1
        incident.emitted_score = case.score
        incident.emitted_facets = sorted(set(incident.emitted_facets) | set(facets))
        self._events.append(self._event(p, case, t, trace_id, span_id, effective, incident))
        return incident

    def _event(self, p: Profile, case: Case, t: int, trace_id: bytes, span_id: bytes,
               effective: dict[str, float], incident: Incident) -> ConvergenceEvent:
        ident = p.identity
        ranked = sorted(case.facets.items(), key=lambda kv: -effective[kv[0]])
        used = [(k, v[0]) for k, v in ranked if effective[k] >= MIN_FACET] or [(k, v[0]) for k, v in ranked[:1]]
        signals = tuple(sorted({fd.signal for _, fd in used}))
        facets = {k for k, _ in used}
        classes = set(case.classes)
        rule = self.rules.rule_for(facets | {k.split(".")[0] for k in facets}, classes, ident.kind)
        findings = tuple(f"{k}: {fd.reason}" for k, fd in used)
        times = [fd.time_ns for _, fd in used]
        what = "; ".join(fd.reason for _, fd in used[:3])
        who = f"{ident.kind.replace('_', ' ')} {ident.principal} still holds a valid credential, but"
        if len(used) == 1:
            body = f"{who} {what}. That alone is strong enough: {_lower_first(rule.name)}."
        else:
            body = (f"{who} {what}. {len(used)} independent signs across {', '.join(signals)} telemetry "
                    f"agree: {_lower_first(rule.name)}.")
        return ConvergenceEvent(
            convergence_id=incident.id, identity=ident, score=round(case.score, 4), signals=signals,
            findings=findings, first_seen_ns=min(times), last_seen_ns=max(times), time_ns=t,
            trace_id=trace_id, span_id=span_id,
            evidence_trace_ids=tuple(tid for _, tid in case.evidence),
            related_identities=tuple(case.related), body=body, rule_name=rule.name,
            rule_category=rule.category, rule_references=rule.references,
            rule_description=rule.description, version=incident.version,
            facts={k: tuple(v) for k, v in case.facts.items()},
            baseline={"records": p.count, **baseline_counts(p)},
            response=self.rules.response_for(ident.kind, (case.facts.get("credential") or [None])[-1]),
        )

    # -- inspection ----------------------------------------------------------------------------
    def describe(self, identity: str) -> dict | None:
        """An identity's baseline as held (engine/inspect.py), by id (``kind:principal``) or, when
        unambiguous, by principal alone; None when not tracked. Reads, never learns."""
        from .inspect import describe

        with self._lock:
            p = self._roster.peek(identity)
            if p is None:
                # by the roster's own index, one look-up per kind: never a scan of every identity
                # under the lock, whatever name a client asks for
                found = [q for q in (self._roster.peek(f"{kind}:{identity}") for kind in IDENTITY_KINDS)
                         if q is not None]
                p = found[0] if len(found) == 1 else None
            return describe(self, p) if p is not None else None

    def peer_count(self, group: str) -> int:
        return self._peers.members(group)

    def trust_of(self, p: Profile, t: int) -> float:
        return self._trust(p, t) if p.drop else 1.0

    def take_events(self) -> list[ConvergenceEvent]:
        with self._lock:
            events, self._events = self._events, []
            return events

    # -- durable state -------------------------------------------------------------------------
    def snapshot_to(self, path: str, deadline: float | None = None) -> bool:
        """Writes state to ``path`` (see ``state.py``) without holding the engine lock for more
        than a chunk of identities at a time. False when ``deadline`` (time.monotonic) passed
        first: the previous snapshot is then left as it was."""
        return write_snapshot(self, path, deadline)

    def restore_from(self, path: str) -> None:
        """Replaces state with a snapshot's; raises ``state.StateError`` naming what is wrong."""
        read_snapshot(self, path, Profile)

    def scratch(self) -> "Engine":
        """An empty engine configured as this one: where a snapshot is tried before it is used."""
        return Engine(self.config, catalog=self.catalog)


_STALE_SAID: set = set()


def _warn_if_stale(rules) -> None:
    """Providers add addresses every week: ranges older than MAX_AGE_DAYS call addresses of their
    new regions outside. Said once per process and ranges file (every engine and every reload
    reads the rules)."""
    from .provider_ranges import MAX_AGE_DAYS

    ranges = rules.provider_ranges
    if ranges is not None and ranges.age_days() > MAX_AGE_DAYS and id(ranges) not in _STALE_SAID:
        _STALE_SAID.add(id(ranges))
        log.warning("provider ranges are %d days old (over %d): refresh them with `nhi-processor ranges refresh` "
                    "(docs/limits.md)", ranges.age_days(), MAX_AGE_DAYS)
