"""Exceptions: owned, dated, narrow, and never able to hide an attack unnoticed.

Panther-style: each match field has a case that matches and one that does not; then the whole
path: a real service with an exceptions file silences exactly one benign identity's events until
the exception's expiry and no longer, and ``nhi-sim bench --exceptions`` fails on one that keeps
back an attack's event."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys

import pytest

from otel_processor.config import ProcessorConfig, ServiceConfig
from otel_processor.engine.config import EngineConfig
from otel_processor.errors import ConfigError
from otel_processor.hosts.serve.service import Service
from otel_processor.model import ConvergenceEvent, Identity
from otel_processor.outputs.exceptions import ExceptionEntry, ExceptionMatch, draft, load_exceptions
from otel_processor.pipeline import BatchProcessor
from simulator.replay import replay
from simulator.scenarios import load_scenarios
from simulator.world import build_world
from worlds import BATCH_SECONDS, requests_of

T0 = 1_772_700_000 * 10**9
ROLE = Identity("workload:arn:aws:iam::111122223333:role/backup-nightly", "workload",
                "arn:aws:iam::111122223333:role/backup-nightly", "aws")


def event(identity: Identity = ROLE, findings=("volume: 12x the busiest window",), t: int = T0) -> ConvergenceEvent:
    facts = {"source.address": ("10.20.3.4",), "network": ("10.20.3.0/24",), "action": ("s3.amazonaws.com/GetObject",),
             "target": ("backups/db-1",)}
    return ConvergenceEvent(
        convergence_id="c0ffee", identity=identity, score=0.8, signals=("app",), findings=tuple(findings),
        first_seen_ns=t, last_seen_ns=t, time_ns=t, trace_id=b"", span_id=b"", evidence_trace_ids=(),
        related_identities=(), body="b", rule_name="Bulk read beyond the identity's history",
        rule_category="Collection", rule_references=("T1530",), rule_description="d", facts=facts)


def entry(expires="2026-03-10", **match) -> ExceptionEntry:
    e = ExceptionEntry(id="x", match=ExceptionMatch(**match), owner="platform@example.com", reason="nightly backup",
                       expires=expires)
    e.match.validate()
    e.validate()
    return e


@pytest.mark.parametrize("match, other", [
    ({"identity": ROLE.id}, {"identity": dataclasses.replace(ROLE, id=ROLE.id + "-2")}),
    ({"identity": "workload:arn:aws:iam::*:role/backup-*"}, {"identity": dataclasses.replace(ROLE, id="workload:x")}),
    ({"kind": "workload"}, {"identity": dataclasses.replace(ROLE, kind="ci_job")}),
    ({"rule": "Bulk read*"}, {"rule_name": "Secret store emptied"}),
    ({"facets": ["volume"]}, {"findings": ("volume: 12x", "new_value.network: first use from 203.0.113.0/24")}),
    ({"networks": ["10.20.0.0/16"]}, {"source.address": ("10.20.3.4", "203.0.113.9")}),
    # a source that is no address (a service name in sourceIPAddress, a forged value) is not in any network
    ({"networks": ["10.20.0.0/16"]}, {"source.address": ("10.20.3.4", "ec2.amazonaws.com")}),
    ({"actions": ["s3.amazonaws.com/Get*"]}, {"action": ("s3.amazonaws.com/GetObject", "iam.amazonaws.com/CreateUser")}),
    ({"targets": ["backups/*"]}, {"target": ("backups/db-1", "prod/secrets/db")}),
])
def test_each_match_field_holds_for_its_event_and_not_for_one_that_adds_anything(match, other):
    e = entry(**match)
    assert e.applies(event())
    changed = event()
    for key, value in other.items():
        if key == "identity":
            changed = dataclasses.replace(changed, identity=value)
        elif key in ("rule_name", "findings"):
            changed = dataclasses.replace(changed, **{key: value})
        else:
            changed = dataclasses.replace(changed, facts={**changed.facts, key: value})
    assert not e.applies(changed)


def test_an_exception_stops_at_its_expiry_in_event_time():
    e = entry(expires="2026-03-10", identity=ROLE.id)
    before = int(dt.datetime(2026, 3, 9, 23, 59, tzinfo=dt.timezone.utc).timestamp() * 1e9)
    after = int(dt.datetime(2026, 3, 10, 0, 0, tzinfo=dt.timezone.utc).timestamp() * 1e9)
    assert e.applies(event(t=before)) and not e.applies(event(t=after))


@pytest.mark.parametrize("text, problem", [
    ("- id: a\n  match: {identity: x}\n  reason: r\n  expires: 2026-01-01\n", "owner"),
    ("- id: a\n  match: {identity: x}\n  owner: o\n  reason: r\n", "expires is required"),
    ("- id: a\n  match: {}\n  owner: o\n  reason: r\n  expires: 2026-01-01\n", "match is empty"),
    ("- id: a\n  match: {identity: '*'}\n  owner: o\n  reason: r\n  expires: 2026-01-01\n", "every identity"),
    ("- id: a\n  match: {networks: [10.0.0.0/33]}\n  owner: o\n  reason: r\n  expires: 2026-01-01\n", "CIDR"),
    ("- id: a\n  match: {identity: x}\n  owner: o\n  reason: r\n  expires: 2999-01-01\n", "long_lived"),
    ("- id: a\n  match: {identity: x}\n  owner: o\n  reason: r\n  expires: 2026-01-01\n"
     "- id: a\n  match: {identity: y}\n  owner: o\n  reason: r\n  expires: 2026-01-01\n", "used twice"),
    ("- id: a\n  match: {identity: x, colour: red}\n  owner: o\n  reason: r\n  expires: 2026-01-01\n", "colour"),
])
def test_a_bad_exceptions_file_is_one_line_naming_file_line_and_problem(tmp_path, text, problem):
    path = tmp_path / "exceptions.yaml"
    path.write_text("exceptions:\n" + "\n".join("  " + line for line in text.splitlines()) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_exceptions(str(path))
    assert problem in str(caught.value) and str(path) in str(caught.value)


def test_a_long_lived_exception_must_say_so(tmp_path):
    path = tmp_path / "exceptions.yaml"
    path.write_text("exceptions:\n  - id: a\n    match: {identity: x}\n    owner: o\n    reason: r\n"
                    "    expires: 2999-01-01\n    long_lived: true\n")
    assert load_exceptions(str(path)).exceptions[0].long_lived


def test_a_drafted_exception_needs_an_owner_and_a_reason_then_matches_only_its_event(tmp_path):
    e = event(findings=("volume: 12x", "new_value.target: first target"))
    attrs = {"nhi.identity.id": e.identity.id, "nhi.convergence.id": e.convergence_id,
             "security_rule.name": e.rule_name, "nhi.convergence.findings": list(e.findings),
             "nhi.convergence.networks": list(e.facts["network"]), "nhi.convergence.actions": list(e.facts["action"]),
             "nhi.convergence.targets": list(e.facts["target"])}
    path = tmp_path / "draft.yaml"
    path.write_text(draft(attrs, today=dt.date(2026, 3, 1)))
    with pytest.raises(ConfigError, match="owner and reason"):
        load_exceptions(str(path))
    path.write_text(path.read_text().replace("owner: ''", "owner: platform@example.com")
                    .replace("reason: ''", "reason: nightly backup, SEC-1"))
    drafted = load_exceptions(str(path)).exceptions[0]
    assert drafted.expires_at.date() == dt.date(2026, 3, 31)
    assert drafted.applies(e)
    assert not drafted.applies(dataclasses.replace(e, findings=e.findings + ("schedule: 03:00 UTC",)))
    assert not drafted.applies(dataclasses.replace(e, facts={**e.facts, "source.address": ("198.51.100.7",)}))


def test_the_draft_command_reads_an_otlp_json_event(tmp_path):
    from otel_processor.otlp_json import to_otlp_json
    from otel_processor.outputs.events import events_request
    import json

    path = tmp_path / "event.json"
    path.write_text(json.dumps(to_otlp_json(events_request([event()], "nhi-convergence"))))
    done = subprocess.run([sys.executable, "-m", "otel_processor", "exceptions", "draft", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"identity: {ROLE.id}" in done.stdout and "- volume" in done.stdout and "expires:" in done.stdout


# -- the whole path -------------------------------------------------------------------------------
LOW_THRESHOLD = 0.3  # low enough that benign look-alikes raise events to silence
# a world where benign look-alikes raise events at LOW_THRESHOLD
WORLD = dict(identities=100, days=3, seed=3)
BENCH_WORLD = dict(identities=80, days=3, seed=3)  # the bench's own world, rebuilt here for its labels
HOUR = 3600 * 10**9
IN_A_MONTH = (dt.date.today() + dt.timedelta(days=30)).isoformat()  # a fixed date would lapse under the suite


def _expiry(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, dt.timezone.utc).isoformat()


def test_an_exception_silences_exactly_one_benign_identity_until_its_expiry(sink, tmp_path):
    """Two exceptions on two benign identities that raise events: one expires after its
    identity's events (they are silenced), one before (they pass, as after any expiry)."""
    world = build_world(load_scenarios(), **WORLD)
    attacked = {i for label in world.labels if label.kind == "attack" for i in label.identity_ids}
    engine = EngineConfig(alert_threshold=LOW_THRESHOLD)
    reference = BatchProcessor(ProcessorConfig(state_dir=None, engine=engine))
    expected = []
    for signal, request, _ in requests_of(world.records):
        expected += (reference.process_traces if signal == "traces" else reference.process_logs)(request).events
    times: dict[str, list[int]] = {}
    for e in expected:
        if e.identity.id not in attacked:
            times.setdefault(e.identity.id, []).append(e.time_ns)
    silenced_identity, expired_identity = sorted(times)[:2]
    path = tmp_path / "exceptions.yaml"
    path.write_text(
        "exceptions:\n"
        f"  - id: one-benign\n    match: {{identity: '{silenced_identity}'}}\n"
        f"    owner: platform@example.com\n    reason: expected while it migrates\n"
        f"    expires: '{_expiry(max(times[silenced_identity]) + HOUR)}'\n"
        f"  - id: lapsed\n    match: {{identity: '{expired_identity}'}}\n"
        f"    owner: platform@example.com\n    reason: expected last month\n"
        f"    expires: '{_expiry(min(times[expired_identity]) - HOUR)}'\n")

    svc = ServiceConfig(listen_grpc="127.0.0.1:0", listen_http=None, listen_admin=None, forward=sink.endpoint)
    service = Service(ProcessorConfig(service=svc, state_dir=None, engine=engine, exceptions=str(path))).start()
    try:
        replay(requests_of(world.records), f"127.0.0.1:{service.grpc_port}", 0.0, len(world.records), False)
    finally:
        service.stop(grace=5)
    sent = {(rec_attr(r, "nhi.identity.id"), rec_attr(r, "nhi.convergence.id"), rec_attr(r, "nhi.convergence.version"))
            for r in sink.convergence_events()}
    keep = {(e.identity.id, e.convergence_id, e.version) for e in expected if e.identity.id != silenced_identity}
    assert sent == keep
    assert any(identity == expired_identity for identity, _, _ in sent)
    silenced = [e for e in expected if e.identity.id == silenced_identity]
    assert service.gate.suppressed == {"one-benign": len(silenced)}
    counted = service.metrics.snapshot().get("nhi.processor.events.suppressed")
    assert counted == len(silenced)


def rec_attr(record, key):
    from otel_processor.anyvalue import to_python

    for kv in record.attributes:
        if kv.key == key:
            return to_python(kv.value)
    return None


def test_bench_with_exceptions_fails_on_one_that_hides_an_attack_and_only_on_that_one(tmp_path):
    world = build_world(load_scenarios(), **BENCH_WORLD)
    attack = next(label for label in world.labels if label.kind == "attack")
    attacked = {i for label in world.labels if label.kind == "attack" for i in label.identity_ids}
    benign = sorted({i for label in world.labels if label.kind == "benign" for i in label.identity_ids} - attacked)
    lines = ["exceptions:", "  - id: looks-harmless", f"    match: {{identity: '{attack.identity_ids[0]}'}}",
             "    owner: someone@example.com", "    reason: we think it is fine", f"    expires: {IN_A_MONTH}"]
    for n, identity in enumerate(benign):
        lines += [f"  - id: benign-{n}", f"    match: {{identity: '{identity}'}}", "    owner: o@example.com",
                  "    reason: look-alike", f"    expires: {IN_A_MONTH}"]
    path = tmp_path / "exceptions.yaml"
    path.write_text("\n".join(lines) + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"engine:\n  alert_threshold: {LOW_THRESHOLD}\n")  # the look-alikes raise events too
    done = subprocess.run([sys.executable, "-m", "simulator.cli", "bench", "--no-progress", "--exceptions", str(path),
                           "--config", str(config), "--identities", str(BENCH_WORLD["identities"]),
                           "--days", str(BENCH_WORLD["days"]), "--seed", str(BENCH_WORLD["seed"]),
                           "--batch-seconds", str(BATCH_SECONDS)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert f"EXCEPTION HIDES AN ATTACK: looks-harmless kept back an event of attack {attack.scenario}" in out
    assert "benign-" in out.split("kept back", 1)[1], "the look-alikes' exceptions kept events back..."
    assert "HIDES AN ATTACK: benign-" not in out, "...and are not blamed for it"


def test_the_verdict_passes_when_no_kept_back_event_is_an_attacks(tmp_path, capsys):
    from simulator.cli import exceptions_verdict

    path = tmp_path / "exceptions.yaml"
    path.write_text("exceptions:\n"
                    "  - {id: benign-0, match: {identity: 'workload:a'}, owner: o@example.com, reason: r, expires: 2026-03-10}\n"
                    "  - {id: drafted-1, match: {identity: 'workload:b'}, owner: o@example.com, reason: r, expires: 2026-03-10}\n")

    class Result:
        held = [("benign-0", None)]

        def __init__(self, hidden):
            self._hidden = hidden

        def hidden_attacks(self):
            return self._hidden

    assert exceptions_verdict(Result([]), str(path)) == 0
    out = capsys.readouterr().out
    assert "benign-0 kept back 1 event," not in out and "benign-0 kept back 1 event" in out  # one, not "1 events"
    assert "drafted-1 kept back no event in this run" in out  # an exception that matches nothing says so
    assert exceptions_verdict(Result([("x", "attack", "id")]), str(path)) == 1


def test_check_config_refuses_a_config_whose_exceptions_file_is_wrong(tmp_path):
    (tmp_path / "exceptions.yaml").write_text("exceptions:\n  - id: a\n    match: {identity: x}\n    owner: o\n"
                                              "    reason: r\n")
    (tmp_path / "config.yaml").write_text("exceptions: exceptions.yaml\n")
    done = subprocess.run([sys.executable, "-m", "otel_processor", "check-config", str(tmp_path / "config.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "exceptions.yaml" in done.stderr and "expires is required" in done.stderr


def test_an_event_with_more_values_than_kept_is_never_vouched_for_value_by_value():
    """An attacker who does many harmless-looking things after one that is not must not push the
    one out of what an exception checks."""
    from otel_processor.engine.correlator import MAX_FACT_VALUES, Case

    case = Case()
    case.note_facts((None, None, None, None, "iam.amazonaws.com/CreateUser", None, None, None))
    for n in range(MAX_FACT_VALUES):
        case.note_facts((None, None, None, None, f"s3.amazonaws.com/GetObject{n}", None, None, None))
    assert "iam.amazonaws.com/CreateUser" not in case.facts["action"]
    e = dataclasses.replace(event(), facts={k: tuple(v) for k, v in case.facts.items()})
    assert not entry(actions=["s3.amazonaws.com/Get*"]).applies(e)
    assert entry(identity=ROLE.id).applies(e), "fields the overflow does not touch still match"
