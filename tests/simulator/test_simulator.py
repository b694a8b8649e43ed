"""The scenario simulator: schema, determinism, replay over real sockets, bench, no label leak."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st


from otel_processor.config import ProcessorConfig, ServiceConfig
from otel_processor.errors import ConfigError
from simulator.sink import OtlpSink
from otel_processor.hosts.serve.service import Service
from simulator.bench import run_bench
from simulator.encode import batches
from simulator.fleet import RESERVED_WORDS
from simulator.replay import read_jsonl, replay, write_jsonl
from simulator.report import write_report
from simulator.scenarios import SCENARIO_DIR, load_scenario, load_scenarios
from simulator.world import build_world
from worlds import BATCH_SECONDS, requests_of

GOOD = {
    "name": "t", "kind": "attack", "description": "d", "targets": "ci_role", "references": ["T1078"],
    "day": 1, "hour": 3, "must_detect": True,
    "steps": [{"do": "calls", "count": 5, "over_s": 60, "network": "new_public"}],
}


def write(tmp_path, data, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_packaged_scenarios_load_and_cover_the_issue():
    scenarios = load_scenarios()
    attacks = [s for s in scenarios if s.kind == "attack"]
    benign = [s for s in scenarios if s.kind == "benign"]
    assert len(attacks) >= 8 and len(benign) >= 7
    assert all(any(r.startswith("T1") for r in s.references) for s in attacks)
    assert all(any(r.startswith("NHI") for r in s.references) for s in attacks)


@pytest.mark.parametrize("change, field_name", [
    ({"kind": "sneaky"}, "kind"),
    ({"targets": "mainframe"}, "targets"),
    ({"steps": [{"do": "teleport"}]}, "steps.do"),
    ({"steps": [{"do": "calls", "outcome": "maybe"}]}, "steps.outcome"),
    ({"steps": [{"do": "calls", "network": "somewhere"}]}, "steps.network"),
    ({"must_detect": False}, "must_detect"),
    ({"colour": "red"}, "colour"),
    ({"day": "monday"}, "day"),
])
def test_bad_scenario_names_file_field_and_problem(tmp_path, change, field_name):
    path = write(tmp_path, {**GOOD, **change})
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(path + ":"), message
    assert field_name in message, message


@settings(max_examples=40, deadline=None)
@given(count=st.integers(-3, 500), over_s=st.floats(-10, 1e5, allow_nan=False),
       share=st.floats(-1, 2, allow_nan=False), day=st.integers(-1, 4), hour=st.floats(-5, 30, allow_nan=False))
def test_schema_accepts_exactly_the_valid_parameters(tmp_path_factory, count, over_s, share, day, hour):
    data = {**GOOD, "day": day, "hour": hour,
            "steps": [{"do": "calls", "count": count, "over_s": over_s, "denied_share": share}]}
    path = write(tmp_path_factory.mktemp("s"), data)
    valid = count >= 1 and over_s > 0 and 0 <= share <= 1 and 1 <= day <= 2 and 0 <= hour < 24
    if valid:
        assert load_scenario(path).steps[0].count == count
    else:
        with pytest.raises(ConfigError):
            load_scenario(path)


def test_same_seed_same_world_different_seed_different_world():
    scenarios = load_scenarios()
    a = build_world(scenarios, 80, 1, seed=11)
    b = build_world(scenarios, 80, 1, seed=11)
    c = build_world(scenarios, 80, 1, seed=12)
    fingerprint = lambda w: [(r.time_ns, r.signal, sorted(r.attributes.items(), key=str), r.resource) for r in w.records]
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)


def test_ground_truth_never_enters_telemetry():
    """No attribute, resource, body, scope or name carries a scenario name, a label or the fleet's
    simulator-only handles."""
    scenarios = load_scenarios()
    world = build_world(scenarios, 80, 1, seed=3)
    forbidden = {s.name for s in scenarios} | set(RESERVED_WORDS) | {i.key for i in world.fleet}
    # every string of a request (keys, values, bodies, names) is in its wire bytes as it is
    blob = b"\n".join(request.SerializeToString() for _, request, _ in requests_of(world.records))
    blob = blob.decode("utf-8", "replace").lower()
    leaks = sorted(word for word in forbidden if word.lower() in blob)
    assert not leaks, leaks


def _service(sink):
    config = ProcessorConfig(service=ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin="127.0.0.1:0", listen_http="127.0.0.1:0",
                                                   forward=sink.endpoint), state_dir=None)
    return Service(config)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_replay_end_to_end_delivers_every_record(transport, tmp_path):
    world = build_world([], 40, 1, seed=5)  # delivery, not detection: the fleet's ordinary day
    with OtlpSink() as sink, _service(sink) as service:
        endpoint = (f"127.0.0.1:{service.grpc_port}" if transport == "grpc"
                    else f"http://127.0.0.1:{service.http_port}")
        sent = replay(requests_of(world.records), endpoint, progress=False)
        assert sent == len(world.records)
    got = len(sink.spans()) + len(sink.telemetry_log_records())
    assert got == sent


def test_export_then_replay_from_file_round_trips(tmp_path):
    world = build_world([], 40, 1, seed=5)
    path = str(tmp_path / "capture.jsonl")
    written = write_jsonl(requests_of(world.records), path)
    assert written == len(world.records)
    with OtlpSink() as sink:
        sent = replay(read_jsonl(path), sink.endpoint, progress=False)
    assert sent == written == len(sink.spans()) + len(sink.telemetry_log_records())
    ids = {s.trace_id for _, s in sink.spans()}
    assert {r.trace_id for r in world.records if r.signal == "traces"} == ids


_BENCH: dict = {}


def small_bench(shapes: str):
    """One bench run per shape for the whole module (the report test reads the same run)."""
    if shapes not in _BENCH:
        _BENCH[shapes] = run_bench(load_scenarios(), identities=80, days=3, seed=9, progress=False, shapes=shapes,
                                   batch_seconds=BATCH_SECONDS)
    return _BENCH[shapes]


@pytest.mark.parametrize("shapes", ["otel", "vendor"])
def test_bench_on_a_small_fleet_detects_every_attack_and_no_benign_identity(shapes):
    """The same behaviour, found whether it arrives as the contract's attributes or as the vendors'
    audit records read by the input profiles."""
    result = small_bench(shapes)
    assert result.records_received == result.records_sent == len(result.world.records)
    rows = {row.name: row for row in result.score.scenarios}
    assert set(rows) == {s.name for s in load_scenarios()}
    missed = [name for name, row in rows.items() if row.kind == "attack" and not row.detected]
    alarms = [name for name, row in rows.items() if row.kind == "benign" and row.detected]
    assert (missed, alarms, result.score.false_positive_identities) == ([], [], [])
    assert result.score.recall == 1.0 and result.score.precision == 1.0
    for row in rows.values():
        if row.kind == "attack":
            assert row.time_to_detect_s is not None and 0 <= row.time_to_detect_s <= 3600
    # the events the bench counted are the sink's convergence events, with explanations
    assert result.events and all(e.body and e.findings and e.rule for e in result.events)


def test_vendor_shaped_records_resolve_to_the_same_identities_as_their_attribute_twins():
    from otel_processor.anyvalue import to_python
    from otel_processor.inputs.dispatch import profile_of
    from otel_processor.pipeline import BatchProcessor

    scenarios = load_scenarios()
    plain, shaped = build_world(scenarios, 80, 1, seed=4), build_world(scenarios, 80, 1, seed=4, shapes="vendor")
    assert len(plain.records) == len(shaped.records)
    vendor = [r for r in shaped.records if r.body_object is not None or r.body.startswith("{")]
    assert len(vendor) > len(shaped.records) // 10
    identities = []
    sources = set()
    delegated = set()
    for world in (plain, shaped):
        processor, ids = BatchProcessor(), []
        for signal, request, _ in batches(world.records):
            if signal == "logs":
                processor.process_logs(request)
                for rl in request.resource_logs:
                    for record in rl.scope_logs[0].log_records:
                        attrs = {kv.key: kv.value.string_value for kv in record.attributes}
                        ids.append((record.trace_id, attrs.get("nhi.identity.id")))
                        if "nhi.identity.on_behalf_of" in attrs:
                            delegated.add((world is shaped, attrs["nhi.identity.id"]))
                        if world is shaped and record.body.WhichOneof("value") is not None and not attrs.keys() - {
                                k for k in attrs if k.startswith("nhi.")}:
                            body = to_python(record.body)
                            sources.add(profile_of(body if isinstance(body, dict) else __import__("json").loads(body)))
            else:
                processor.process_traces(request)
        identities.append(dict(ids))
    assert identities[0] == identities[1]
    assert None not in identities[1].values() or list(identities[0].values()).count(None) == list(
        identities[1].values()).count(None)
    assert sources >= {"cloudtrail", "kubernetes", "gcp_audit", "entra_signin", "entra_audit", "m365"}
    # every way of signing in the fleet has is resolved to the identity its fields make it, in both shapes
    shaped_ids = {i.identity_id: i.shape for i in shaped.fleet if i.shape}
    assert set(shaped_ids.values()) == {"github_oidc", "iam_user_key", "aws_sso", "federated_ci", "mail_reader"}
    for resolved in identities:
        assert set(shaped_ids) <= set(resolved.values())
    # an app's delegated mailbox reads carry the user beside it where the audit log says so
    readers = {ident for ident, shape in shaped_ids.items() if shape == "mail_reader"}
    assert {ident for in_shaped, ident in delegated if in_shaped} == readers


def test_a_step_names_its_source_and_a_wrong_one_is_refused(tmp_path):
    data = {**GOOD, "steps": [{**GOOD["steps"][0], "source": "cloudtrail"}]}
    scenario = load_scenario(write(tmp_path, data))
    world = build_world([scenario], 30, 1, seed=2)
    assert any(r.body_object and r.body_object.get("eventSource") for r in world.records)
    bad = {**GOOD, "steps": [{**GOOD["steps"][0], "source": "m365"}]}
    with pytest.raises(ConfigError, match="ci_role records do not arrive in m365"):
        load_scenario(write(tmp_path, bad, "bad.yaml"))


def test_scenario_folder_has_a_readme_documenting_every_field():
    readme = open(os.path.join(SCENARIO_DIR, "README.md")).read()
    from dataclasses import fields

    from simulator.scenarios import Scenario, Step
    for f in fields(Scenario) + fields(Step):
        if f.name != "source":
            assert f"`{f.name}`" in readme, f.name


def test_nhi_sim_sink_prints_events_as_they_arrive_and_counts_records():
    """The downstream a new user points `serve` at: a real process on a real port."""
    import socket
    import subprocess
    import sys

    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    from otel_processor.model import ConvergenceEvent, Identity
    from otel_processor.outputs.events import events_request
    from otlp_builders import traces

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "sink", "--listen", f"127.0.0.1:{port}",
                             "--every", "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "OTLP/gRPC on 127.0.0.1" in proc.stdout.readline()
        ident = Identity("workload:deploy", "workload", "deploy", "aws.principal.arn")
        event = ConvergenceEvent("abc", ident, 0.87, ("app",), ("volume: 20x",), 1, 2, 1_772_409_600 * 10**9,
                                 b"", b"", (), (), "deploy swept the secret store", "Bulk secret retrieval",
                                 "Credential Access", ("T1555",), "d")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(events_request([event], "nhi"), timeout=5)
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(traces({"service.name": "a"}, {}, {}), timeout=5)
        channel.close()
        line = proc.stdout.readline()
        assert line.startswith("2026-03-02 00:00:00Z ERROR workload:deploy score 0.87 [Bulk secret retrieval]: "
                               "deploy swept the secret store"), line
        for _ in range(20):
            line = proc.stdout.readline()
            if "2 spans" in line:
                break
        assert "2 spans, 0 log records, 0 metric data points, 1 convergence events" in line
    finally:
        proc.terminate()
        proc.wait(timeout=10)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_the_report_summarises_every_scenario_and_renders_in_a_browser(tmp_path):
    """Summary table and contents first; per scenario its events with severity, ids and absolute
    times, labelled trust and timeline plots, a benign one's peak against the threshold. Then
    headless Chromium loads it and takes a screenshot (CI installs Chromium; see .ci/run)."""
    result = small_bench("otel")
    scenarios = load_scenarios()
    path = tmp_path / "report.html"
    write_report(str(path), result, scenarios)
    page = path.read_text()
    summary = page[page.index("<h2>Summary</h2>"):page.index("<h2>Contents</h2>")]
    assert summary.count("<tr") == len(scenarios) + 1
    sections = page.split("<section ")[1:]
    assert len(sections) == len(scenarios)
    kinds = {s.name: s.kind for s in scenarios}
    for section in sections:
        name = re.search(r"<h2>([^<]+) <span", section).group(1)
        assert re.search(r"Window 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d to ", section)
        assert section.count("event time (UTC)") >= 1 and "trust (nhi.trust.score)" in section
        if kinds.pop(name) == "attack":
            assert "<th>severity</th>" in section and re.search(r"<td>(high|critical|medium)</td>", section)
            assert re.search(r"<code>T\d{4}", section) and "v1" in section
            assert "a record that tripped a detector" in section
        else:
            assert "Peak score" in section and "the alert threshold" in section
    assert kinds == {}, "a section per scenario"
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (.ci/run installs it)")
    shot = tmp_path / "report.png"
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1000,2400", f"--screenshot={shot}", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1000, 2400) and len(png) > 50_000, "a rendered page, not a blank one"
