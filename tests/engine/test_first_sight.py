"""First-sight signals (engine/first_sight.py): each with a positive case and the look-alike that
must stay quiet, through the engine as hosts call it, on identities with no history at all (as
real captures arrive) unless the case is about history."""

from __future__ import annotations

import pytest

from otel_processor.engine import Engine, EngineConfig
from otel_processor.engine.correlator import Case
from otel_processor.model import Finding
from otel_processor.outputs.events import severity_band

from observations import D, H, S, T0, history, ident, obs

ROLE = ident("arn:aws:iam::111122223333:role/web-app", group="aws:1:web")
INSTANCE_SESSION = "arn:aws:sts::111122223333:assumed-role/web-app/i-0a1b2c3d4e5f60718"
MAC_CLI = "aws-cli/2.13.0 Python/3.11.4 Darwin/22.5.0 exe/x86_64 prompt/off command/s3.ls"
LINUX_CLI = "aws-cli/2.13.0 Python/3.11.4 Linux/5.10.186-179.751.amzn2.x86_64 exe/x86_64.amzn.2 command/s3.cp"
TOKEN = ident("github-token:4711", kind="api_key", group="github:acme")


def _facets(engine: Engine) -> set[str]:
    return {line.split(":", 1)[0] for event in engine.take_events() for line in event.findings}


def _run(records) -> tuple[Engine, list]:
    engine = Engine(EngineConfig())
    for o in records:
        engine.observe(o)
    return engine, engine.take_events()


# -- an instance's credential on a desktop ----------------------------------------------------
def test_an_instance_credential_used_from_a_mac_raises_a_high_event_with_no_history():
    calls = [obs(ROLE, T0 + k * 20 * S, action=f"s3.amazonaws.com/{a}", target=f"bucket-{k % 3}",
                 src="198.51.100.23", ua=MAC_CLI, aws_session=INSTANCE_SESSION, trace=k + 1)
             for k, a in enumerate(["ListBuckets", "ListObjects", "GetObject", "GetObject"])]
    _, events = _run(calls)
    assert len(events) == 1
    event = events[0]
    assert event.identity.id == ROLE.id
    assert any(f.startswith("first_sight.instance_credential:") and "i-0a1b2c3d4e5f60718" in f
               and "desktop" in f for f in event.findings)
    assert severity_band(event.score) in ("high", "critical")
    assert event.rule_name == "Instance or pod credential used from a desktop"


@pytest.mark.look_alike_of("test_an_instance_credential_used_from_a_mac_raises_a_high_event_with_no_history")
def test_the_same_instance_credential_used_by_a_deploy_tool_on_linux_stays_quiet():
    calls = [obs(ROLE, T0 + k * 20 * S, action="s3.amazonaws.com/GetObject", target=f"bucket-{k % 3}",
                 src="10.40.1.7", ua=LINUX_CLI, aws_session=INSTANCE_SESSION, trace=k + 1) for k in range(6)]
    _, events = _run(calls)
    assert events == []


@pytest.mark.look_alike_of("test_an_instance_credential_used_from_a_mac_raises_a_high_event_with_no_history")
def test_an_engineer_assuming_a_role_from_a_laptop_is_not_an_instance_credential():
    session = "arn:aws:sts::111122223333:assumed-role/web-app/alice@example.com"
    calls = [obs(ROLE, T0 + k * 20 * S, action="s3.amazonaws.com/ListBuckets", src="198.51.100.23", ua=MAC_CLI,
                 aws_session=session, trace=k + 1) for k in range(4)]
    _, events = _run(calls)
    assert events == []


def test_a_pod_token_used_by_kubectl_on_a_mac():
    pod = ident("system:serviceaccount:payments:api", group="k8s:payments")
    calls = [obs(pod, T0 + k * 10 * S, action="list secrets", target="payments/secrets", src="198.51.100.40",
                 ua="kubectl/v1.29.2 (darwin/arm64) kubernetes/4b8e819", trace=k + 1) for k in range(3)]
    engine, events = _run(calls)
    assert [e.identity.id for e in events] == [pod.id]


@pytest.mark.look_alike_of("test_a_pod_token_used_by_kubectl_on_a_mac")
def test_the_same_pod_token_used_by_its_workload_in_the_cluster_stays_quiet():
    pod = ident("system:serviceaccount:payments:api", group="k8s:payments")
    in_cluster = [obs(pod, T0 + k * 10 * S, action="list secrets", target="payments/secrets", src="10.0.3.4",
                      ua="api/v0.0.0 (linux/amd64) kubernetes/$Format", trace=k + 1) for k in range(3)]
    assert _run(in_cluster)[1] == []


@pytest.mark.look_alike_of("test_an_instance_credential_used_from_a_mac_raises_a_high_event_with_no_history")
def test_a_client_the_settled_baseline_holds_is_normal_here():
    """An instance role an operator really does use from a Mac (the baseline says so)."""
    engine = Engine(EngineConfig())
    t = history(engine, ROLE, ua=MAC_CLI, aws_session=INSTANCE_SESSION)
    engine.take_events()
    engine.observe(obs(ROLE, t + H, action="s3.amazonaws.com/GetObject", target="prod/db0", src="10.20.0.5",
                       ua=MAC_CLI, aws_session=INSTANCE_SESSION, trace=99))
    assert "first_sight.instance_credential" not in _facets(engine)


# -- a secret store swept -----------------------------------------------------------------------
def test_twenty_five_distinct_secrets_in_three_minutes_with_no_history():
    calls = [obs(ROLE, T0 + k * 7 * S, target=f"prod/secret-{k}", src="203.0.113.77", trace=k + 1)
             for k in range(25)]
    engine, events = _run(calls)
    assert len(events) == 1 and events[0].identity.id == ROLE.id
    assert any(f.startswith("first_sight.secret_sweep:") and "25 distinct secrets" not in f
               or f.startswith("first_sight.secret_sweep:") for f in events[0].findings)


@pytest.mark.look_alike_of("test_twenty_five_distinct_secrets_in_three_minutes_with_no_history")
def test_a_rotation_job_whose_history_holds_the_same_burst_stays_quiet():
    engine = Engine(EngineConfig())
    for night in range(3):
        for k in range(30):
            engine.observe(obs(ROLE, T0 + night * D + 2 * H + k * 5 * S, target=f"prod/secret-{k}", trace=k + 1))
    engine.take_events()  # the first night, with no history, is a sweep as far as anyone can tell
    for k in range(30):
        engine.observe(obs(ROLE, T0 + 3 * D + 2 * H + k * 5 * S, target=f"prod/secret-{k}", trace=100 + k))
    assert "first_sight.secret_sweep" not in _facets(engine)


@pytest.mark.look_alike_of("test_twenty_five_distinct_secrets_in_three_minutes_with_no_history")
def test_a_few_secrets_spread_over_an_hour_are_no_sweep():
    calls = [obs(ROLE, T0 + k * 3 * 60 * S, target=f"prod/secret-{k}", trace=k + 1) for k in range(25)]
    _, events = _run(calls)
    assert not any("first_sight.secret_sweep" in f for e in events for f in e.findings)


@pytest.mark.look_alike_of("test_twenty_five_distinct_secrets_in_three_minutes_with_no_history")
def test_a_human_reading_many_secrets_is_not_a_non_human_sweep():
    person = ident("arn:aws:iam::111122223333:user/bert", kind="human", group=None)
    calls = [obs(person, T0 + k * 7 * S, target=f"prod/secret-{k}", trace=k + 1) for k in range(25)]
    assert _run(calls)[1] == []


# -- repositories mass-cloned -----------------------------------------------------------------
def test_a_token_cloning_twelve_private_repositories_in_half_an_hour():
    calls = [obs(TOKEN, T0 + k * 150 * S, action="git.clone", target=f"acme/repo-{k}", src="203.0.113.9",
                 ua="git/2.43.0", signal="auth", trace=k + 1) for k in range(12)]
    _, events = _run(calls)
    assert [e.identity.id for e in events] == [TOKEN.id]
    assert any(f.startswith("first_sight.repository_sweep:") for f in events[0].findings)


@pytest.mark.look_alike_of("test_a_token_cloning_twelve_private_repositories_in_half_an_hour")
def test_a_token_cloning_one_repository_an_hour_is_no_sweep():
    calls = [obs(TOKEN, T0 + k * H, action="git.clone", target=f"acme/repo-{k}", src="203.0.113.9",
                 ua="git/2.43.0", signal="auth", trace=k + 1) for k in range(12)]
    assert _run(calls)[1] == []


@pytest.mark.look_alike_of("test_a_token_cloning_twelve_private_repositories_in_half_an_hour")
def test_a_backup_job_the_catalog_declares_may_clone_everything():
    backup = ident("github-token:backup", kind="api_key", group="github:acme", expected_actions=("git.clone",))
    calls = [obs(backup, T0 + k * 60 * S, action="git.clone", target=f"acme/repo-{k}", ua="git/2.43.0",
                 signal="auth", trace=k + 1) for k in range(40)]
    assert _run(calls)[1] == []


# -- privilege -------------------------------------------------------------------------------------
def test_a_settled_role_creating_a_user_for_the_first_time():
    engine = Engine(EngineConfig())
    t = history(engine, ROLE)
    engine.take_events()
    engine.observe(obs(ROLE, t + H, action="iam.amazonaws.com/CreateUser", target="backdoor", signal="iam", trace=500))
    engine.observe(obs(ROLE, t + H + S, action="iam.amazonaws.com/CreateAccessKey", target="backdoor", signal="iam",
                       trace=501))
    events = engine.take_events()
    assert events and all(e.identity.id == ROLE.id for e in events)
    assert any(f.startswith("first_sight.privilege:") and "CreateUser" in f for e in events for f in e.findings)


@pytest.mark.look_alike_of("test_a_settled_role_creating_a_user_for_the_first_time")
def test_a_deploy_role_that_always_creates_roles_stays_quiet():
    engine = Engine(EngineConfig())
    t = history(engine, ROLE, days=7)
    for day in range(7):
        engine.observe(obs(ROLE, T0 + day * D + 9 * H + 30 * S, action="iam.amazonaws.com/CreateRole",
                           target="app-role", signal="iam", trace=900 + day))
    engine.take_events()
    engine.observe(obs(ROLE, t + H, action="iam.amazonaws.com/CreateRole", target="app-role", signal="iam", trace=999))
    assert "first_sight.privilege" not in _facets(engine)


def test_role_chaining_is_a_first_but_ec2_handing_an_instance_its_session_is_not():
    found = {}
    for issuer in ("ec2.amazonaws.com", INSTANCE_SESSION):
        engine = Engine(EngineConfig())
        t = history(engine, ROLE, aws_session=INSTANCE_SESSION)
        engine.take_events()
        assume = obs(ROLE, t + H, action="sts.amazonaws.com/AssumeRole", target="admin", signal="iam", trace=600,
                     aws_session=INSTANCE_SESSION)
        assume.details["nhi.credential.issued_by"] = issuer
        engine.observe(assume)
        found[issuer] = "first_sight.privilege" in _facets(engine)
    assert found == {"ec2.amazonaws.com": False, INSTANCE_SESSION: True}


@pytest.mark.look_alike_of("test_a_settled_role_creating_a_user_for_the_first_time")
def test_one_privilege_change_in_a_cold_capture_is_evidence_but_not_an_event_alone():
    _, events = _run([obs(ROLE, T0, action="iam.amazonaws.com/AttachRolePolicy", target="web-app", signal="iam")])
    assert events == []


# -- scores and bands --------------------------------------------------------------------------
@pytest.mark.parametrize("score,band", [(0.3, "low"), (0.5, "medium"), (0.69, "medium"), (0.7, "high"),
                                        (0.89, "high"), (0.9, "critical"), (1.0, "critical")])
def test_severity_bands(score, band):
    assert severity_band(score) == band


def _case(*facets: tuple[str, float, str]) -> float:
    case = Case()
    for name, score, signal in facets:
        case.add(Finding(name, score, "r", signal, T0), None)
    return case.ceiling()


def test_one_first_sight_fact_stands_alone_while_one_baseline_departure_does_not():
    assert _case(("first_sight.instance_credential", 0.75, "app")) == pytest.approx(0.75)
    assert _case(("new_value.network", 0.75, "app")) == pytest.approx(0.45)


def test_two_independent_facts_reach_critical():
    assert severity_band(_case(("first_sight.instance_credential", 0.75, "app"),
                               ("first_sight.secret_sweep", 0.7, "app"))) == "critical"


def test_first_sight_state_survives_a_snapshot():
    from otel_processor.engine.first_sight import FirstSightState

    engine = Engine(EngineConfig())
    for k in range(25):
        engine.observe(obs(ROLE, T0 + k * 7 * S, target=f"prod/secret-{k}", trace=k + 1))
    state = engine._roster.peek(ROLE.id).first_sight
    assert state is not None and state.used()
    assert FirstSightState.from_state(state.state()).state() == state.state()
    quiet = ident("arn:aws:iam::111122223333:role/quiet", group="aws:1:quiet")
    engine.observe(obs(quiet, T0, action="s3.amazonaws.com/GetObject", target="b"))
    assert engine._roster.peek(quiet.id).first_sight is None  # no state kept for what never needed it


def test_a_rules_file_with_a_malformed_first_sight_section_is_a_clear_error():
    from otel_processor.engine.first_sight import FirstSightRules
    from otel_processor.errors import ConfigError

    for bad in ([1, 2], {"desktop_clients": "Darwin"}, {"desktop_clients": ["(unclosed"]},
                {"secret_sweep_count": 0}, {"secret_sweep_s": True}):
        with pytest.raises(ConfigError):
            FirstSightRules.from_data(bad, "rules.yaml")


# -- an application granted mail access, then reading in bulk -----------------------------------
ADMIN = ident("it-admin@corp.example", kind="human", group="")
APP = ident("1f0e2d3c", kind="oauth_app", group="name:1f0e2d3c")


def _grant(t, scopes="Mail.ReadWrite User.Read", app="1f0e2d3c", trace=1):
    return obs(ADMIN, t, action="oauth.consent.granted", signal="iam", target=None, src="198.51.100.23",
               ua=None, oauth_client_id=app, oauth_scopes=scopes, trace=trace)


def _counted(o, items: int):
    o.details["messaging.batch.message_count"] = str(items)  # obs() would turn its "_" into "."
    return o


def _mail_reads(t, items=(30, 25, 20), mailbox="cfo@corp.example", src="45.137.21.88"):
    return [_counted(obs(APP, t + k * 90 * S, action="mailbox.items.read", signal="email", target=mailbox, src=src,
                         ua="Client=REST", oauth_client_id="1f0e2d3c", trace=100 + k), n)
            for k, n in enumerate(items)]


def test_an_app_granted_mail_then_reading_a_mailbox_in_bulk_in_either_order():
    t = T0 + 9 * H
    for records in ([_grant(t), *_mail_reads(t + 300 * S)], [*_mail_reads(t + 300 * S), _grant(t)]):
        engine = Engine(EngineConfig())
        engine.observe(obs(APP, t - 60 * S, action="token.issued", signal="auth", target=None, src="45.137.21.88"))
        for o in records:
            engine.observe(o)
        events = engine.take_events()
        assert {e.identity.id for e in events} == {APP.id}
        assert any(f.startswith("first_sight.granted_bulk_read:") and "Mail.ReadWrite" in f
                   for e in events for f in e.findings)
        assert ADMIN.id in events[-1].related_identities or events[-1].related_identities == ()


@pytest.mark.look_alike_of("test_an_app_granted_mail_then_reading_a_mailbox_in_bulk_in_either_order")
def test_reading_without_a_grant_or_after_a_harmless_grant_is_no_signal():
    t = T0 + 9 * H
    for grant in ([], [_grant(t, scopes="User.Read openid profile")]):
        engine = Engine(EngineConfig())
        for o in [*grant, *_mail_reads(t + 300 * S, items=(200, 180))]:
            engine.observe(o)
        assert engine.take_events() == []


def test_a_few_messages_read_after_a_grant_by_an_app_that_never_read_mail_raise():
    """A targeted read (a few messages of one mailbox) is what such intrusions do: for an app whose
    history holds no mail read, any read after the grant counts; a new secret beside the grant
    makes it critical."""
    t = T0 + 9 * H
    for extra, floor in (([], 0.5), ([_secret(t + 60 * S)], 0.9)):
        engine = Engine(EngineConfig())
        for o in [_grant(t), *extra, *_mail_reads(t + 300 * S, items=(7,))]:
            engine.observe(o)
        events = engine.take_events()
        assert [e.identity.id for e in events] == [APP.id]
        assert "its history holds no such read" in " ".join(events[-1].findings) and events[-1].score >= floor


@pytest.mark.look_alike_of("test_a_few_messages_read_after_a_grant_by_an_app_that_never_read_mail_raise")
def test_a_few_new_messages_read_after_a_grant_by_an_app_that_reads_mail_are_not_bulk():
    """An app whose settled history holds mail reads is held to the volume thresholds."""
    engine = _mail_archiver(days=4, items=40)
    t = T0 + 4 * D + 9 * H
    for o in [_grant(t), *_mail_reads(t + 300 * S, items=(2, 3), src="20.61.14.9")]:
        engine.observe(o)
    assert engine.take_events() == []


def _mail_archiver(days: int, items: int) -> Engine:
    """An engine that has seen the app read six mailboxes a day for ``days`` days."""
    engine = Engine(EngineConfig())
    for day in range(days):
        for k in range(6):
            engine.observe(_counted(obs(APP, T0 + day * D + k * H, action="mailbox.items.read", signal="email",
                                        target=f"user{k}@corp.example", src="20.61.14.9", ua="Client=REST",
                                        trace=day * 10 + k + 1), items))
    engine.take_events()
    return engine


def _secret(t):
    return obs(ADMIN, t, action="credential.created", signal="iam", target=None, src="198.51.100.23", ua=None,
               nhi_target_identity=f"oauth_app:{APP.principal}", nhi_credential_created="k-new")


@pytest.mark.look_alike_of("test_a_new_secret_used_minutes_later_from_a_network_neither_creator_nor_app_used")
def test_an_app_whose_baseline_holds_mail_reads_keeps_reading_after_its_secret_is_rotated():
    """The look-alike: a new secret on a mail archiver that has read mailboxes for a week."""
    engine = _mail_archiver(days=8, items=150)
    t = T0 + 8 * D + 9 * H
    engine.observe(obs(ADMIN, t, action="credential.created", signal="iam", target=None, src="10.40.2.17", ua=None,
                       nhi_target_identity=f"oauth_app:{APP.principal}", nhi_credential_created="k-new"))
    for k in range(6):
        engine.observe(_counted(obs(APP, t + 600 * S + k * 60 * S, action="mailbox.items.read", signal="email",
                                    target=f"user{k}@corp.example", src="20.61.14.9", ua="Client=REST",
                                    nhi_credential_id="k-new", trace=900 + k), 150))
    assert engine.take_events() == []


# -- a credential created, then used at once from elsewhere -------------------------------------
def test_a_new_secret_used_minutes_later_from_a_network_neither_creator_nor_app_used():
    t = T0 + 9 * H
    engine = Engine(EngineConfig())
    engine.observe(obs(ADMIN, t, action="credential.created", signal="iam", target=None, src="198.51.100.23", ua=None,
                       nhi_target_identity=f"oauth_app:{APP.principal}", nhi_credential_created="k-new",
                       nhi_credential_issued_to=APP.id, nhi_credential_issued_by="it-admin@corp.example"))
    engine.observe(obs(APP, t + 240 * S, action="token.issued", signal="auth", target=None, src="45.137.21.88",
                       ua=None, nhi_credential_id="k-new", trace=7))
    events = engine.take_events()
    assert [e.identity.id for e in events] == [APP.id]
    assert any(f.startswith("first_sight.fresh_credential_use:") for f in events[0].findings)


def test_a_new_secret_whose_creation_record_arrives_after_its_use_is_judged_when_it_arrives():
    t = T0 + 9 * H
    engine = Engine(EngineConfig())
    engine.observe(obs(APP, t + 240 * S, action="token.issued", signal="auth", target=None, src="45.137.21.88",
                       ua=None, nhi_credential_id="k-new", trace=7))
    assert engine.take_events() == []
    engine.observe(obs(ADMIN, t, action="credential.created", signal="iam", target=None, src="198.51.100.23", ua=None,
                       nhi_target_identity=f"oauth_app:{APP.principal}", nhi_credential_created="k-new",
                       nhi_credential_issued_to=APP.id, nhi_credential_issued_by="it-admin@corp.example"))
    events = engine.take_events()
    assert [e.identity.id for e in events] == [APP.id]
    assert any(f.startswith("first_sight.fresh_credential_use:") for f in events[0].findings)


@pytest.mark.look_alike_of("test_a_new_secret_used_minutes_later_from_a_network_neither_creator_nor_app_used")
def test_a_new_secret_used_by_its_app_from_the_app_s_own_network_stays_quiet():
    engine = Engine(EngineConfig())
    t = history(engine, APP, action="token.issued", signal="auth", ua=None)
    engine.take_events()
    engine.observe(obs(ADMIN, t, action="credential.created", signal="iam", target=None, src="198.51.100.23", ua=None,
                       nhi_credential_created="k-new", nhi_credential_issued_to=APP.id,
                       nhi_credential_issued_by="it-admin@corp.example"))
    engine.observe(obs(APP, t + 240 * S, action="token.issued", signal="auth", target="prod/db0", src="10.20.0.5",
                       ua=None, nhi_credential_id="k-new", trace=7))
    assert engine.take_events() == []


@pytest.mark.look_alike_of("test_a_new_secret_used_minutes_later_from_a_network_neither_creator_nor_app_used")
def test_an_old_credential_used_from_a_new_network_is_not_a_fresh_one():
    t = T0 + 9 * H
    engine = Engine(EngineConfig())
    engine.observe(obs(ADMIN, t, action="credential.created", signal="iam", target=None, src="198.51.100.23", ua=None,
                       nhi_credential_created="k-old", nhi_credential_issued_to=APP.id,
                       nhi_credential_issued_by="it-admin@corp.example"))
    engine.observe(obs(APP, t + 3 * H, action="token.issued", signal="auth", target=None, src="45.137.21.88",
                       ua=None, nhi_credential_id="k-old", trace=7))
    assert not any(f.startswith("first_sight.fresh_credential_use") for e in engine.take_events() for f in e.findings)


# -- one session key replayed from several networks ---------------------------------------------
def _key_use(t, src, action, key="ASIAEXAMPLEKEY000001", trace=1):
    o = obs(ROLE, t, action=action, target="prod/db", src=src, ua="Boto3/1.34.69 md/Botocore#1.34.69", trace=trace)
    o.details["aws.access_key.id"] = key  # obs() would turn its "_" into "."
    return o


def test_one_temporary_key_from_three_networks_against_two_services_within_half_an_hour():
    calls = [_key_use(T0 + k * 200 * S, src, action, trace=k + 1) for k, (src, action) in enumerate([
        ("203.0.113.10", "secretsmanager.amazonaws.com/GetSecretValue"),
        ("198.51.100.77", "s3.amazonaws.com/ListBuckets"),
        ("192.0.2.200", "sts.amazonaws.com/GetCallerIdentity")])]
    _, events = _run(calls)
    assert [e.identity.id for e in events] == [ROLE.id]
    assert any(f.startswith("first_sight.session_spread:") and "3 networks" in f for f in events[0].findings)


@pytest.mark.parametrize("case", ["two networks", "one service", "an hour apart", "a different key each time"])
@pytest.mark.look_alike_of("test_one_temporary_key_from_three_networks_against_two_services_within_half_an_hour")
def test_a_key_that_does_not_spread_is_no_signal(case):
    networks = ["203.0.113.10", "198.51.100.77"] + ([] if case == "two networks" else ["192.0.2.200"])
    actions = ["s3.amazonaws.com/GetObject"] * 3 if case == "one service" else \
        ["secretsmanager.amazonaws.com/GetSecretValue", "s3.amazonaws.com/ListBuckets", "sts.amazonaws.com/GetCallerIdentity"]
    step = 40 * 60 * S if case == "an hour apart" else 200 * S
    calls = [_key_use(T0 + k * step, src, actions[k], key=f"ASIAEXAMPLEKEY00000{k if case.startswith('a different') else 0}",
                      trace=k + 1) for k, src in enumerate(networks)]
    _, events = _run(calls)
    assert not any(f.startswith("first_sight.session_spread") for e in events for f in e.findings)


def test_a_snapshot_keeps_every_cross_identity_table(tmp_path):
    """Grants, credentials in use, credential facts and mailbox chains live outside any one
    identity's profile: each comes back from a snapshot as it was, and a grant made before a
    restart still links the app's reads after it."""
    t = T0 + 9 * H
    role_session = ident("arn:aws:sts::111122223333:assumed-role/app/i-0abc", group="aws:1:app")
    stream = [
        _grant(t),
        obs(ADMIN, t + 30 * S, action="credential.created", signal="iam", target=None, src="10.40.2.17", ua=None,
            nhi_target_identity=f"oauth_app:{APP.principal}", nhi_credential_created="k-new", trace=2),
        obs(ADMIN, t + 40 * S, action="mailbox.forwarding_rule.created", signal="email", target=None,
            email_to_address="drop@evil.example", email_external="true", trace=3),
        obs(role_session, t + 50 * S, action="s3.amazonaws.com/GetObject", target="b", src="10.0.12.7",
            ua="aws-cli/2.15.0", aws_access_key_id="ASIAEXAMPLE000000001", aws_session="i-0abc", trace=4),
    ]
    engine = Engine(EngineConfig())
    for o in stream:
        engine.observe(o)
    path = str(tmp_path / "state.json.gz")
    assert engine.snapshot_to(path)
    restored = Engine(EngineConfig())
    restored.restore_from(path)
    for table in ("_grants", "_credentials", "_credential_book", "_chain"):
        kept = getattr(engine, table).state()
        assert kept and any(kept), f"{table}: the stream must fill it for this test to mean something"
        assert getattr(restored, table).state() == kept, table
    straight = Engine(EngineConfig())
    for o in stream:
        straight.observe(o)
    for e in (straight, restored):
        for o in _mail_reads(t + 300 * S):
            e.observe(o)
    after_restart = restored.take_events()
    assert any(f.startswith("first_sight.granted_bulk_read:") for ev in after_restart for f in ev.findings)
    assert [(e.identity.id, e.convergence_id, e.score) for e in after_restart] == \
        [(e.identity.id, e.convergence_id, e.score) for e in straight.take_events() if e.time_ns >= t + 300 * S]


# -- a slow sweep of mailboxes ------------------------------------------------------------------
def test_an_app_reading_mailboxes_it_never_read_one_every_90_seconds_is_a_slow_sweep():
    events = _archiver_then_reads([f"exec{k}@corp.example" for k in range(35)], items=3)
    assert any(f.startswith("first_sight.slow_sweep:") for e in events for f in e.findings)


@pytest.mark.look_alike_of("test_an_app_reading_mailboxes_it_never_read_one_every_90_seconds_is_a_slow_sweep")
def test_an_archiver_reading_its_mailboxes_and_two_new_ones_stays_quiet():
    assert _archiver_then_reads([f"user{k}@corp.example" for k in range(8)], items=40) == []


def _archiver_then_reads(mailboxes: list[str], items: int) -> list:
    """The archiver's four days, then one read of each mailbox, one every 90 s, from its usual place."""
    engine = _mail_archiver(days=4, items=40)
    t = T0 + 4 * D + 10 * H
    for k, mailbox in enumerate(mailboxes):
        engine.observe(_counted(obs(APP, t + k * 90 * S, action="mailbox.items.read", signal="email",
                                    target=mailbox, src="20.61.14.9", ua="Client=REST", trace=500 + k), items))
    return engine.take_events()
