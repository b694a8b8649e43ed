"""The behaviour engine on observations built directly (no OTLP): detectors, peers, chain, state."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_processor.engine import Engine, EngineConfig
from otel_processor.engine.detectors import VolumeDetector
from otel_processor.model import Identity

from observations import D, H, S, T0, history, ident, obs, sweep


# -- the engine as a whole ---------------------------------------------------------------------
def test_secret_sweep_from_new_place_gives_one_explained_event_updated_in_place():
    engine = Engine()
    me = ident()
    t = history(engine, me)
    assert engine.take_events() == []
    sweep(engine, me, t + 3 * H)
    events = engine.take_events()
    assert events, "a 45-secret sweep from a new network must be detected"
    assert len({e.convergence_id for e in events}) == 1
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    last = events[-1]
    assert last.score >= 0.9
    assert "203.0.113.77" in last.body and "distinct targets" in last.body
    assert any(ref.startswith("T1") for ref in last.rule_references)
    assert any(ref.startswith("NHI") for ref in last.rule_references)
    assert last.evidence_trace_ids


@pytest.mark.look_alike_of("test_secret_sweep_from_new_place_gives_one_explained_event_updated_in_place")
def test_single_weak_deviation_does_not_alert():
    engine = Engine()
    me = ident()
    t = history(engine, me)
    engine.observe(obs(me, t + 10 * H, src="10.99.0.4"))  # one call from another internal range
    assert engine.take_events() == []


@pytest.mark.look_alike_of("test_the_same_probing_succeeding_is_an_incident")
def test_no_event_without_a_successful_call():
    engine = Engine()
    me = ident()
    t = history(engine, me)
    engine.observe(obs(me, t + 3 * H, outcome="failure", failure="authz"))  # last success long ago
    for k in range(40):
        engine.observe(obs(me, t + D + 3 * H + k * S, action=f"iam.amazonaws.com/List{k}", src="203.0.113.9",
                           ua="curl/8", outcome="failure", failure="authz"))
    assert engine.take_events() == []


def test_the_same_probing_succeeding_is_an_incident():
    """The twin of the test above: the same 40 calls from the same place, succeeding."""
    engine = Engine()
    me = ident()
    t = history(engine, me)
    engine.observe(obs(me, t + 3 * H))
    for k in range(40):
        engine.observe(obs(me, t + D + 3 * H + k * S, action=f"iam.amazonaws.com/List{k}", src="203.0.113.9",
                           ua="curl/8"))
    assert {e.identity.id for e in engine.take_events()} == {me.id}


def _release(movers: int, config: EngineConfig | None = None) -> list[str]:
    """Five services of one namespace; ``movers`` of them start calling two new routes of a new
    target within minutes (a release), then everyone carries on as usual. Identities with events."""
    engine = Engine(config)
    members = [ident(f"shop/svc-{i}", kind="workload", group="svcns:shop") for i in range(5)]
    usual = dict(action="GET /api/orders/{id}", target="orders.internal", src="10.244.1.7", ua="Go-http-client/1.1")
    for m in members:
        for day in range(7):
            for hour in range(8, 20):
                for k in range(3):
                    engine.observe(obs(m, T0 + day * D + hour * H + k * 60 * S, **usual))
    t = T0 + 7 * D + 10 * H
    for n, m in enumerate(members[:movers]):
        for k in range(6):
            route = ("GET /api/v2/ledger/{id}", "POST /api/v2/ledger/reconcile")[k % 2]
            engine.observe(obs(m, t + n * 120 * S + k * 10 * S, **{**usual, "action": route,
                                                                  "target": "ledger.internal"}))
    for m in members:  # later records decide the incidents held for peer confirmation
        for k in range(20):
            engine.observe(obs(m, t + 30 * 60 * S + k * 60 * S, **usual))
    return sorted({e.identity.id for e in engine.take_events()})


def test_a_change_made_by_one_member_alone_is_an_incident():
    assert _release(1) == ["workload:shop/svc-0"]


@pytest.mark.look_alike_of("test_a_change_made_by_one_member_alone_is_an_incident")
def test_the_same_change_made_by_the_whole_group_is_discounted():
    assert _release(5) == []


def test_without_the_peer_discount_the_group_change_would_alert():
    """Control: the group case above is quiet because of the discount, not because the change is weak."""
    assert len(_release(5, EngineConfig(peer_discount=1.0))) == 5


@pytest.mark.look_alike_of("test_a_change_made_by_one_member_alone_is_an_incident")
def test_runner_pool_moving_range_is_not_an_incident():
    """A runner pool moving to a new internal range: every CI role of the group changes network."""
    engine = Engine()
    roles = [ident(f"arn:aws:iam::1:role/ci-runner-{i}", group="aws:1:ci-runner") for i in range(5)]
    t = 0
    for r in roles:
        t = history(engine, r)
    for k, r in enumerate(roles):
        for j in range(3):
            engine.observe(obs(r, t + 9 * H + k * 60 * S + j * S, src=f"172.31.9.{10 + j}", trace=50_000 + k * 10 + j,
                               ua="aws-sdk-go-v2/1.9"))
    assert engine.take_events() == []


def test_warmup_needs_history_as_well_as_records():
    """An identity with plenty of records but an hour of history is still learning: being new
    is not an incident. The same change after the warm-up period is a finding."""
    engine = Engine()
    me = ident("arn:aws:iam::1:role/fresh", group="aws:1:fresh")
    for k in range(60):
        engine.observe(obs(me, T0 + k * 30 * S, target=f"prod/db{k % 2}"))
    young = engine.observe(obs(me, T0 + H, src="198.51.100.9", ua="curl/8"))
    assert young.anomalies == ()
    old = engine.observe(obs(me, T0 + 2 * D, src="203.0.113.50", ua="python-requests/2"))
    assert "new_value.network" in old.anomalies


def test_trust_stays_lowered_on_later_records_without_findings_and_recovers():
    engine = Engine()
    me = ident()
    t = history(engine, me) + 3 * H
    sweep(engine, me, t)
    assert engine.take_events()
    during = engine.observe(obs(me, t + 10 * 60 * S, target="prod/db0"))
    assert during.anomalies == () and during.trust_score < 0.5
    # once the incident has closed (12 quiet hours), ordinary records (at the role's usual hours:
    # t is 03:00) still carry the lowered, recovering trust
    engine.observe(obs(me, t + 14 * H, target="prod/db0"))
    after = engine.observe(obs(me, t + 30 * H, target="prod/db1"))
    later = engine.observe(obs(me, t + 34 * H, target="prod/db1"))
    assert after.anomalies == () and during.trust_score < after.trust_score < later.trust_score < 1.0


def test_each_incident_names_the_rule_its_evidence_matches():
    rules = {}
    engine = Engine()
    me = ident()
    sweep(engine, me, history(engine, me) + 3 * H)
    rules["sweep"] = engine.take_events()[-1].rule_name
    engine = Engine()
    role = ident("arn:aws:iam::1:role/instance-role", group="aws:1:instance")
    session = "arn:aws:sts::1:assumed-role/instance-role/i-0abc"
    engine.observe(obs(role, T0, src="10.0.1.5", ua="aws-sdk-go/1.44", aws_session=session))
    engine.observe(obs(role, T0 + 60 * S, src="198.51.100.7", ua="aws-cli/2.15", aws_session=session))
    rules["split"] = engine.take_events()[-1].rule_name
    assert rules == {"sweep": "Bulk secret retrieval by a non-human identity",
                     "split": "Workload credential used away from the workload it was issued to"}


def _newcomer(step_s: int, distinct: bool) -> list[str]:
    """A role never seen before reads 50 secrets, one every ``step_s``, beside a settled role:
    three secrets over and over, or 50 ``distinct`` ones. Identities with events."""
    engine = Engine()
    t = history(engine, ident())
    newcomer = ident("arn:aws:iam::1:role/deploy-api-v2")
    for k in range(50):
        engine.observe(obs(newcomer, t + k * step_s * S, target=f"prod/db{k if distinct else k % 3}", src="10.20.0.9"))
    return sorted({e.identity.id for e in engine.take_events()})


@pytest.mark.look_alike_of("test_a_brand_new_identity_sweeping_distinct_secrets_is_an_incident")
def test_brand_new_identity_is_not_an_incident():
    assert _newcomer(60, distinct=False) == []


def test_a_brand_new_identity_sweeping_distinct_secrets_is_an_incident():
    """The twin of the test above: the same newcomer, reading 50 distinct secrets in six minutes."""
    assert _newcomer(7, distinct=True) == ["workload:arn:aws:iam::1:role/deploy-api-v2"]


def test_mailbox_forwarding_consent_app_chain():
    engine = Engine()
    mailbox = Identity("service_account:svc-invoices@corp.example", "service_account", "svc-invoices@corp.example",
                       "user.id", group="name:svc-invoices")
    app = Identity("oauth_app:7f1c2a", "oauth_app", "7f1c2a", "oauth.client.id", group="name:7f1c2a")
    t = T0 + 8 * D
    engine.observe(obs(mailbox, t, action="mailbox.forwarding_rule.created", signal="email", target=None,
                       email_to_address="drop@evil.example", email_from_address="svc-invoices@corp.example",
                       email_external="true"))
    engine.observe(obs(mailbox, t + 600 * S, action="oauth.consent.granted", signal="iam", target=None,
                       oauth_client_id="7f1c2a", oauth_scopes="Mail.Read Files.Read.All"))
    engine.observe(obs(app, t + 900 * S, action="token.issued", signal="auth", target=None))
    engine.observe(obs(app, t + 960 * S, action="GET /payments/export", signal="app", target="erp.internal",
                       volume=5e6))
    events = engine.take_events()
    by_identity = {e.identity.id: e for e in events}
    assert app.id in by_identity
    assert mailbox.id in by_identity[app.id].related_identities
    assert by_identity[app.id].rule_name.startswith("Mailbox compromise")


def _chain(rule_action="mailbox.forwarding_rule.created", to="drop@evil.example", consent_after_s=600,
           app_after_s=900):
    """A mailbox rule, a consent by the same mailbox, then the app signs in and exports."""
    engine = Engine()
    mailbox = Identity("service_account:svc-invoices@corp.example", "service_account", "svc-invoices@corp.example",
                       "user.id", group="name:svc-invoices")
    app = Identity("oauth_app:7f1c2a", "oauth_app", "7f1c2a", "oauth.client.id", group="name:7f1c2a")
    t = T0 + 8 * D
    external = "false" if to.endswith("@corp.example") else "true"
    engine.observe(obs(mailbox, t, action=rule_action, signal="email", target=None,
                       email_to_address=to, email_from_address="svc-invoices@corp.example", email_external=external))
    t_consent = t + consent_after_s * S
    engine.observe(obs(mailbox, t_consent, action="oauth.consent.granted", signal="iam", target=None,
                       oauth_client_id="7f1c2a", oauth_scopes="Mail.Read"))
    engine.observe(obs(app, t_consent + app_after_s * S, action="token.issued", signal="auth", target=None))
    engine.observe(obs(app, t_consent + (app_after_s + 60) * S, action="GET /payments/export", signal="app",
                       target="erp.internal", volume=5e6))
    return {e.identity.id for e in engine.take_events()}, app.id


def test_chain_is_raised_within_its_window():
    flagged, app = _chain()
    assert app in flagged


def test_consent_long_after_the_mailbox_rule_is_not_a_chain():
    flagged, app = _chain(consent_after_s=8 * 24 * 3600)  # chain_window_s is 7 days
    assert app not in flagged


def test_app_acting_long_after_the_consent_is_not_a_chain():
    flagged, app = _chain(app_after_s=8 * 24 * 3600)
    assert app not in flagged


def test_an_inbox_rule_forwarding_inside_the_organisation_is_not_tampering():
    flagged, app = _chain(rule_action="mailbox.rule.created", to="finance@corp.example")
    assert flagged == set()
    flagged, app = _chain(rule_action="mailbox.rule.created", to="drop@evil.example")
    assert app in flagged


@pytest.mark.look_alike_of("test_mailbox_forwarding_consent_app_chain")
def test_consent_without_mailbox_tampering_is_not_a_chain():
    engine = Engine()
    mailbox = Identity("human:ana@corp.example", "human", "ana@corp.example", "user.id")
    app = Identity("oauth_app:calendar", "oauth_app", "calendar", "oauth.client.id")
    t = T0 + 8 * D
    engine.observe(obs(mailbox, t, action="oauth.consent.granted", signal="iam", target=None,
                       oauth_client_id="calendar"))
    engine.observe(obs(app, t + 900 * S, action="token.issued", signal="auth", target=None))
    engine.observe(obs(app, t + 960 * S, action="GET /calendar", signal="app", target="graph"))
    assert engine.take_events() == []


def test_catalog_expectation_broken():
    engine = Engine()
    me = ident(expected_networks=("10.20.0.0/16",))
    t = history(engine, me, days=2)
    for k in range(3):
        engine.observe(obs(me, t + k * S, src="198.51.100.7", ua="curl/8"))
    events = engine.take_events()
    assert events and any("declared networks" in f for f in events[-1].findings)


def test_eviction_bounds_identities_and_is_counted():
    engine = Engine(EngineConfig(max_identities=100))
    for i in range(250):
        engine.observe(obs(ident(f"svc-{i}", kind="service_account"), T0 + i * S))
    assert engine.identities_tracked == 100
    assert engine.evictions == 150


def test_state_per_identity_is_bounded_under_a_flood_of_new_values():
    engine = Engine()
    me = ident()
    for k in range(5000):
        engine.observe(obs(me, T0 + k * S, target=f"t-{k}", src=f"10.{k % 250}.{k // 250}.1", ua=f"agent{k}/1"))
    profile = engine._roster.peek(me.id)
    assert all(len(v) <= cap for v, cap in zip(profile.new_values.values, engine._caps))
    assert len(profile.volume.targets) <= VolumeDetector.MAX_TRACKED_TARGETS


def _replay(engine, stream):
    out = []
    for o in stream:
        engine.observe(o)
        out += [(e.convergence_id, e.version, e.score) for e in engine.take_events()]
    return out


def _stream():
    engine_input = []
    me, peer = ident(), ident("arn:aws:iam::1:role/report", group="aws:1:report")

    class Collect:
        def observe(self, o):
            engine_input.append(o)

    history(Collect(), me)
    history(Collect(), peer)
    engine_input.sort(key=lambda o: o.time_ns)
    t = T0 + 7 * D + 3 * H
    for k in range(45):
        engine_input.append(obs(me, t + k * 2 * S, target=f"prod/secret-{k}", src="203.0.113.77", ua="curl/8",
                                trace=9000 + k))
    return engine_input


def test_snapshot_restore_mid_replay_gives_the_same_events(tmp_path):
    stream = _stream()
    straight = _replay(Engine(), stream)
    assert straight
    first = Engine()
    half = len(stream) - 30
    before = _replay(first, stream[:half])
    first.snapshot_to(str(tmp_path / "state.json.gz"))
    second = Engine()
    second.restore_from(str(tmp_path / "state.json.gz"))
    after = _replay(second, stream[half:])
    assert before + after == straight


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 14 * 24 * 3600), st.sampled_from(
    ["GET /a", "iam.amazonaws.com/CreateAccessKey", "s3.amazonaws.com/ListBuckets", "secretsmanager/GetSecretValue",
     "mailbox.forwarding_rule.created", "oauth.consent.granted"]), st.integers(0, 40), st.booleans(),
    st.sampled_from(["10.0.0.1", "203.0.113.5", "198.51.100.1", None])), min_size=1, max_size=150))
def test_invariants_scores_in_range_evidence_and_determinism(rows):
    ids = [ident(f"svc-{i}", kind="service_account", group="name:svc") for i in range(6)]
    stream = [obs(ids[i], T0 + sec * S, action=a, target=f"t{tg}", src=src,
                  outcome="success" if ok else "failure", failure=None if ok else "authz", trace=n + 1,
                  oauth_client_id="app1", email_external="true")
              for n, (i, sec, a, tg, ok, src) in enumerate(sorted(rows, key=lambda r: r[1]))]

    def run():
        engine = Engine(EngineConfig(warmup_s=3600, warmup_records=3, baseline_windows=1))
        verdicts, events = [], []
        for o in stream:
            v = engine.observe(o)
            verdicts.append(dataclasses.astuple(v))
            events += engine.take_events()
        return verdicts, events

    verdicts, events = run()
    for trust, _anomalies, _cid in verdicts:
        assert 0.0 <= trust <= 1.0
    for e in events:
        assert 0.0 <= e.score <= 1.0
        assert e.findings and e.first_seen_ns <= e.last_seen_ns
    again_verdicts, again_events = run()
    assert again_verdicts == verdicts
    assert [(e.convergence_id, e.version, e.body) for e in again_events] == \
           [(e.convergence_id, e.version, e.body) for e in events]


def test_humans_are_scored_but_get_no_events_by_default():
    def run(config):
        engine = Engine(config)
        person = Identity("human:ana@corp.example", "human", "ana@corp.example", "user.id")
        t = history(engine, person)
        sweep(engine, person, t + 3 * H)
        verdict = engine.observe(obs(person, t + 3 * H + 100 * S, target="prod/x-new", src="203.0.113.77", ua="curl/8"))
        return engine.take_events(), verdict

    events, verdict = run(EngineConfig())
    assert events == [] and verdict.trust_score < 0.5
    events, _ = run(EngineConfig(event_kinds=("human",)))
    assert events


def test_the_chain_is_the_same_in_every_arrival_order():
    """Rule, consent, the app's sign-in and its export, delivered in each of the 24 orders (a
    Collector reordering, Rotel's last-first resources, a late batch): the app raises the same
    incident as in event order, with the same id whenever its own two records keep their order
    (an incident's id is fixed when it opens, from the earliest evidence then known)."""
    import itertools

    mailbox = Identity("service_account:svc-invoices@corp.example", "service_account", "svc-invoices@corp.example",
                       "user.id", group="name:svc-invoices")
    app = Identity("oauth_app:7f1c2a", "oauth_app", "7f1c2a", "oauth.client.id", group="name:7f1c2a")
    t = T0 + 8 * D
    records = [
        obs(mailbox, t, action="mailbox.forwarding_rule.created", signal="email", target=None, trace=1,
            email_to_address="drop@evil.example", email_from_address="svc-invoices@corp.example",
            email_external="true"),
        obs(mailbox, t + 120 * S, action="oauth.consent.granted", signal="iam", target=None, trace=2,
            oauth_client_id="7f1c2a", oauth_scopes="Mail.Read"),
        obs(app, t + 200 * S, action="token.issued", signal="auth", target=None, trace=3),
        obs(app, t + 260 * S, action="GET /payments/export", signal="app", target="erp.internal", volume=5e6, trace=4),
    ]

    def incidents(order) -> set[tuple[str, str, str]]:
        engine = Engine()
        for i in order:
            engine.observe(records[i])
        return {(e.identity.id, e.rule_name, e.convergence_id) for e in engine.take_events() if e.identity == app}

    expected = incidents(range(4))
    assert {(who, rule) for who, rule, _ in expected} == {(app.id, "Mailbox compromise turned into OAuth application abuse")}
    for order in itertools.permutations(range(4)):
        found = incidents(order)
        assert {(who, rule) for who, rule, _ in found} == {(who, rule) for who, rule, _ in expected}, order
        if order.index(2) < order.index(3):
            assert found == expected, order


def test_the_earliest_finding_names_the_incident_in_any_arrival_order():
    """Out-of-order delivery must not rename an incident: the earliest evidence names it. Once it
    is open and named, evidence arriving later that is older keeps the name (events already
    carry it)."""
    from otel_processor.engine.correlator import Case, Incident, incident_id
    from otel_processor.model import Finding

    early = Finding("new_value.network", 0.6, "a network never seen", "app", T0)
    late = Finding("volume", 0.6, "12x the busiest window", "app", T0 + 600 * S)
    for order in ([late, early], [early, late]):
        case = Case()
        for finding in order:
            case.add(finding, None)
        assert case.first_ns == T0, [f.detector for f in order]
    case = Case()
    case.add(late, None)
    case.incident = Incident(incident_id("workload:x", case.first_ns), late.time_ns)
    case.add(early, None)
    assert case.first_ns == late.time_ns
