"""Running it for real: SIEM-ready event fields and OCSF findings, the admin listener (health,
readiness, Prometheus, state inspection), the gRPC health service, SIGHUP reloads, JSON logs and
``--version``. Real sockets on 127.0.0.1: the captures go in over OTLP/gRPC, events come out at a
real sink, the admin endpoints are asked over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import jsonschema
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_processor.anyvalue import to_python
from otel_processor.config import ProcessorConfig, ServiceConfig, TelemetryConfig, EventsConfig
from otel_processor.hosts.serve.service import Service
from otel_processor.inputs.convert import main as convert_main
from otel_processor.otlp_json import parse_json
from paths import CAPTURES, TESTDATA

OCSF_SCHEMA = os.path.join(TESTDATA, "ocsf", "detection_finding-1.5.0.schema.json")
# The Midnight Blizzard capture: Entra ID and Microsoft 365 records, no trace ids anywhere.
MAIL_CAPTURE = os.path.join(CAPTURES, "app-granted-mail-reads-mailbox")
# The stolen instance credential capture: CloudTrail records, no trace ids either.
INSTANCE_CAPTURE = os.path.join(CAPTURES, "instance-credential-from-laptop.json")


def capture_requests(path: str, tmp_path) -> list[ExportLogsServiceRequest]:
    out = tmp_path / f"{os.path.basename(path)}.jsonl"
    assert convert_main([path], str(out), None) == 0
    return [parse_json(line, ExportLogsServiceRequest) for line in out.read_text().splitlines()]


def send_all(port: int, requests) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        for request in requests:
            stub.Export(request, timeout=30)


def start_service(sink, tmp_path=None, **config) -> Service:
    svc = ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin="127.0.0.1:0", listen_http=None,
                        forward=sink.endpoint)
    return Service(ProcessorConfig(service=svc, state_dir=str(tmp_path) if tmp_path else None, **config)).start()


def event_attributes(sink) -> list[dict]:
    return [{kv.key: to_python(kv.value) for kv in rec.attributes} for rec in sink.convergence_events()]


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- SIEM-ready events --------------------------------------------------------------------------
@pytest.mark.parametrize("capture, credential_form", [(INSTANCE_CAPTURE, "session"), (MAIL_CAPTURE, "app")])
def test_an_event_carries_its_facts_as_fields_and_the_records_own_ids(sink, tmp_path, capture, credential_form):
    service = start_service(sink)
    try:
        send_all(service.grpc_port, capture_requests(capture, tmp_path))
    finally:
        service.stop(grace=2)
    events = event_attributes(sink)
    assert events, "the capture raises an event"
    e = events[-1]
    # Where, with what, what and on what: fields beside the sentence, not only in it.
    assert e["source.address"] and e["source.address"] in " ".join(e["nhi.convergence.findings"]) + e["source.address"]
    assert e["user_agent.original"]
    assert e["nhi.convergence.actions"] and all(isinstance(a, str) for a in e["nhi.convergence.actions"])
    assert isinstance(e["nhi.convergence.targets"], list) and isinstance(e["nhi.convergence.networks"], list)
    # No trace ids in an audit log: the evidence is the source's own record ids.
    assert e["nhi.evidence.trace_ids"] == []
    assert e["nhi.evidence.record_ids"], "CloudTrail eventID / Entra id / unified audit log Id as evidence"
    raw = "\n".join(open(os.path.join(dp, f)).read() for dp, _, fs in os.walk(capture) for f in fs) \
        if os.path.isdir(capture) else open(capture).read()
    assert all(r in raw for r in e["nhi.evidence.record_ids"]), "ids as the vendor wrote them"
    # Lists are lists; ATT&CK and OWASP ids apart; what to do first fits the credential.
    assert e["threat.technique.id"] and all(t.startswith("T") for t in e["threat.technique.id"])
    assert all(o.startswith("NHI") for o in e["nhi.owasp.id"])
    response = e["nhi.response.suggested"].lower()
    assert ("session" in response) if credential_form == "session" else ("consent" in response)
    assert e["event.id"] == f"{e['nhi.convergence.id']}.{e['nhi.convergence.version']}"
    assert e["nhi.convergence.severity"] in ("high", "critical")


def test_ocsf_events_validate_against_the_ocsf_schema(sink, tmp_path):
    service = start_service(sink, events=EventsConfig(format="ocsf"))
    try:
        send_all(service.grpc_port, capture_requests(INSTANCE_CAPTURE, tmp_path)
                 + capture_requests(MAIL_CAPTURE, tmp_path))
    finally:
        service.stop(grace=2)
    records = sink.convergence_events()
    assert len(records) >= 2
    validator = jsonschema.Draft202012Validator(json.load(open(OCSF_SCHEMA)))
    for record in records:
        finding = json.loads(record.body.string_value)
        errors = [f"{'/'.join(map(str, x.path))}: {x.message}" for x in validator.iter_errors(finding)]
        assert errors == []
        attrs = {kv.key: to_python(kv.value) for kv in record.attributes}
        assert finding["class_uid"] == 2004 and finding["finding_info"]["uid"] == attrs["nhi.convergence.id"]
        assert finding["finding_info"]["analytic"]["type_id"] == 2  # Behavioral
        assert finding["actor"]["user"]["uid"] == attrs["nhi.identity.id"]
        assert {a["technique"]["uid"] for a in finding["finding_info"]["attacks"]} == set(attrs["threat.technique.id"])
        assert len(finding["anomaly_analyses"][0]["anomalies"]) == len(attrs["nhi.convergence.findings"])
        assert finding["anomaly_analyses"][0]["baselines"], "the baseline behind the findings"
        assert finding["finding_info"]["first_seen_time"] <= finding["finding_info"]["last_seen_time"]


def test_the_schema_catches_what_a_mapping_mistake_would_be():
    """The checked-in schema is strict enough to fail a wrong finding (else the test above proves nothing)."""
    validator = jsonschema.Draft202012Validator(json.load(open(OCSF_SCHEMA)))
    good = {"activity_id": 1, "category_uid": 2, "class_uid": 2004, "type_uid": 200401, "time": 1, "severity_id": 4,
            "finding_info": {"uid": "x"}, "metadata": {"version": "1.5.0", "product": {"name": "p"}}}
    assert list(validator.iter_errors(good)) == []
    for broken in ({**good, "class_uid": 2003}, {**good, "severity_id": 9}, {**good, "finding_info": {}},
                   {**good, "findings_info": {"uid": "x"}}, {**good, "time": "yesterday"}):
        assert list(validator.iter_errors(broken)), broken


# -- the admin listener and the gRPC health service ---------------------------------------------
def test_health_readiness_prometheus_and_version_answer(sink, tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    service = start_service(sink, telemetry=TelemetryConfig(prometheus=True))
    try:
        send_all(service.grpc_port, capture_requests(INSTANCE_CAPTURE, tmp_path))
        port = service.admin_port
        assert get(port, "/healthz") == (200, b"ok\n")
        assert get(port, "/readyz")[0] == 200
        status, body = get(port, "/metrics")
        assert status == 200
        text = body.decode()
        assert "nhi_processor_records_received" in text and 'signal="logs"' in text
        helps = [line.split(" ", 3) for line in text.splitlines() if line.startswith("# HELP nhi_processor")]
        assert helps and all(len(h) == 4 and h[3].strip() for h in helps), "every metric says what it counts"
        assert get(port, "/version")[1].decode().strip()
        assert get(port, "/nothing")[0] == 404
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for name in ("", "opentelemetry.proto.collector.logs.v1.LogsService"):
                answer = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        service.stop(grace=2)


def test_readiness_says_no_while_downstream_is_down_and_comes_back_with_no_traffic(tmp_path):
    """Behind a Kubernetes Service an unready pod gets no traffic: readiness must recover from
    the service's own probe of downstream (an empty export on a back-off), not from a record."""
    from simulator.sink import OtlpSink

    with OtlpSink() as down:
        down.refuse = True
        service = start_service(down, telemetry=TelemetryConfig(prometheus=False))
        try:
            with pytest.raises(grpc.RpcError):
                send_all(service.grpc_port, capture_requests(INSTANCE_CAPTURE, tmp_path)[:1])
            status, body = get(service.admin_port, "/readyz")
            assert status == 503 and b"unavailable" in body
            assert get(service.admin_port, "/metrics")[0] == 404  # prometheus off
            time.sleep(1.5)  # probes meanwhile are refused: still unready
            assert get(service.admin_port, "/readyz")[0] == 503
            down.refuse = False
            received = service.metrics.snapshot().get("nhi.processor.records.received", 0)
            for _ in range(100):  # a hang guard, not a bound: the probe backs off to 4 s at most
                if get(service.admin_port, "/readyz")[0] == 200:
                    break
                time.sleep(0.1)
            assert get(service.admin_port, "/readyz") == (200, b"ready\n")
            assert service.metrics.snapshot().get("nhi.processor.records.received", 0) == received  # no traffic
            assert all(not r.resource_logs for r in down.contents.logs)  # the probes carried nothing
        finally:
            service.stop(grace=1)


def test_readiness_says_no_as_soon_as_shutdown_starts_while_a_batch_drains(sink, tmp_path):
    """A draining replica must leave the Service's endpoints before its last batch is done."""
    import threading

    sink.hold = threading.Event()  # downstream answers the in-flight batch only when told
    svc = ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin="127.0.0.1:0", listen_http=None,
                        forward=sink.endpoint, forward_timeout_s=60)  # the held export must not time out
    service = Service(ProcessorConfig(service=svc, state_dir=None, telemetry=TelemetryConfig(prometheus=False))).start()
    stopping = threading.Thread(target=service.stop, kwargs={"grace": 30})
    channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
    try:
        export = logs_service_pb2_grpc.LogsServiceStub(channel).Export.future(
            capture_requests(INSTANCE_CAPTURE, tmp_path)[0], timeout=60)
        assert sink.wait_for(lambda s: s.arrived > 0, 30), "the batch is being forwarded"
        assert get(service.admin_port, "/readyz")[0] == 200
        stopping.start()
        for _ in range(3000):  # a hang guard: shutdown starts at once
            if not service.readiness()[0]:
                break
            time.sleep(0.01)
        assert get(service.admin_port, "/readyz") == (503, b"shutting down\n")
        assert not export.done(), "still draining"
        sink.hold.set()
        assert export.result() is not None  # and the batch completes
    finally:
        sink.hold.set()
        channel.close()
        if stopping.ident:
            stopping.join(60)
        else:
            service.stop(grace=2)


# -- state inspection -----------------------------------------------------------------------------
def test_state_show_on_a_running_service_and_on_its_state_directory_agree(sink, tmp_path):
    state_dir = tmp_path / "state"
    service = start_service(sink, state_dir_path := state_dir)
    identity = "workload:arn:aws:iam::444455556666:role/app-server-role"
    try:
        send_all(service.grpc_port, capture_requests(INSTANCE_CAPTURE, tmp_path))
        live = run_cli("state", "show", identity, "--endpoint", f"127.0.0.1:{service.admin_port}", "--json")
        live_text = run_cli("state", "show", identity, "--endpoint", f"127.0.0.1:{service.admin_port}")
        missing = subprocess.run([sys.executable, "-m", "otel_processor", "state", "show", "workload:nobody",
                                  "--endpoint", f"127.0.0.1:{service.admin_port}"], capture_output=True, text=True)
    finally:
        service.stop(grace=5)
    held = run_cli("state", "show", identity, "--state-dir", str(state_dir_path), "--json")
    assert json.loads(live) == json.loads(held)
    d = json.loads(live)
    assert d["identity"]["id"] == identity and d["records"] > 0
    assert d["trust"] < 1.0 and d["incident"]["convergence_id"]
    assert d["known"]["networks"] >= 1 and d["known"]["clients"] >= 1
    assert run_cli("state", "show", identity, "--state-dir", str(state_dir_path)) == live_text
    assert "trust" in live_text and identity in live_text
    assert missing.returncode == 1 and "not tracked" in missing.stderr


def run_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "otel_processor", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_version_on_both_commands():
    for module in ("otel_processor", "simulator.cli"):
        done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.split()[-1][0].isdigit(), done.stdout + done.stderr


# -- the running process: JSON logs, a log line per event, SIGHUP ---------------------------------
def test_json_logs_a_line_per_event_and_sighup_reload_keeps_a_good_file_over_a_bad_one(sink, tmp_path):
    exceptions = tmp_path / "exceptions.yaml"
    exceptions.write_text("exceptions: []\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_processor", "serve", "--listen-admin", "", "--listen-grpc", "127.0.0.1:0",
         "--listen-http", "", "--forward", sink.endpoint, "--exceptions", str(exceptions), "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.split("OTLP/gRPC 127.0.0.1:")[1].split(",")[0].split(" ")[0])
        send_all(port, capture_requests(INSTANCE_CAPTURE, tmp_path))
        exceptions.write_text("exceptions:\n  - id: no-owner\n    match: {kind: workload}\n    reason: r\n"
                              "    expires: 2026-01-01\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        exceptions.write_text("exceptions: []\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert proc.poll() is None, "a bad file on reload does not take the service down"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    said = [json.loads(x) for x in [line, *out.splitlines()] if x.strip()]  # start-up and shutdown, as JSON too
    assert said[0]["message"].startswith("nhi-processor ") and said[0]["listening"]
    assert said[-1]["message"] == "nhi-processor: drained and stopped"
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert logs and all({"time", "level", "logger", "message"} <= set(x) for x in logs)
    assert len(logs) == len([line for line in err.splitlines() if line.strip()]), "every line is JSON"
    messages = [x["message"] for x in logs]
    assert any(m.startswith("convergence event raised: id=") for m in messages)
    raised = next(x for x in logs if x["message"].startswith("convergence event raised"))
    assert raised["nhi.identity.id"] and raised["security_rule.name"] and raised["nhi.convergence.score"] > 0
    assert any("exceptions not reloaded" in m and "owner" in m for m in messages)
    assert any(m.startswith("exceptions reloaded") for m in messages)


def test_reload_takes_a_good_catalog_and_rules_and_keeps_the_old_ones_over_bad_files(sink, tmp_path):
    """SIGHUP's work, in process: what reloads takes effect from the next batch; a broken file
    leaves the previous one in force and says so; what the engine learnt stays."""
    from otel_processor.engine.config import EngineConfig
    from otel_processor.engine.features import RULES_FILE
    from otlp_builders import logs

    catalog, rules = tmp_path / "catalog.yaml", tmp_path / "rules.yaml"
    catalog.write_text("identities:\n  - principal: svc-reporting\n    owner: data-team@example.com\n")
    rules.write_text(open(RULES_FILE).read())
    service = start_service(sink, catalog=str(catalog), engine=EngineConfig(rules_file=str(rules)))
    request = logs({"service.name": "reports"}, {"attrs": {"user.id": "svc-reporting", "event.name": "report.run"}})
    try:
        send_all(service.grpc_port, [request])
        learnt = service.engine.identities_tracked
        catalog.write_text("identities:\n  - principal: svc-reporting\n    owner: finance-team@example.com\n")
        rules.write_text(open(RULES_FILE).read().replace("  - name: Instance or pod credential used from a desktop",
                                                         "  - name: Renamed by the reload", 1))
        assert service.reload()
        assert service.engine.rules.rules[0].name == "Renamed by the reload"
        send_all(service.grpc_port, [request])
        catalog.write_text("identities:\n  - kind: nonsense\n")
        rules.write_text("rules: [\n")
        assert not service.reload()
        assert service.engine.rules.rules[0].name == "Renamed by the reload", "bad rules keep the old ones"
        send_all(service.grpc_port, [request])
        assert service.engine.identities_tracked == learnt, "a reload forgets nothing"
    finally:
        service.stop(grace=2)
    owners = [next(kv.value.string_value for kv in rec.attributes if kv.key == "nhi.identity.owner")
              for rec in sink.telemetry_log_records()]
    assert owners == ["data-team@example.com", "finance-team@example.com", "finance-team@example.com"]


def test_an_admin_listener_beyond_loopback_is_warned_about(caplog):
    from otel_processor.hosts.serve.auth import BearerTokens, warn_if_exposed

    with caplog.at_level("WARNING"):
        warn_if_exposed(ServiceConfig(listen_admin="127.0.0.1:14319"), BearerTokens(None))
        assert not [r for r in caplog.records if "listen_admin" in r.getMessage()]
        warn_if_exposed(ServiceConfig(listen_admin="0.0.0.0:14319"), BearerTokens(None))
    assert [r for r in caplog.records if "listen_admin 0.0.0.0:14319" in r.getMessage()]


# -- the admin listener is not a way in ---------------------------------------------------------
def test_state_and_metrics_take_the_admin_token_while_probes_stay_open(sink, tmp_path):
    tokens = tmp_path / "admin-tokens"
    tokens.write_text("# operators\nadmin-token-7f3a91\n")
    svc = ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin="127.0.0.1:0", listen_http=None,
                        forward=sink.endpoint)
    svc.auth.admin_bearer_tokens_file = str(tokens)
    service = Service(ProcessorConfig(service=svc, telemetry=TelemetryConfig(prometheus=True))).start()
    identity = "workload:arn:aws:iam::444455556666:role/app-server-role"
    try:
        send_all(service.grpc_port, capture_requests(INSTANCE_CAPTURE, tmp_path))
        port = service.admin_port
        for path in (f"/state/{identity}", "/state/workload:nobody", "/metrics"):
            status, body = get(port, path)
            assert status == 401 and b"bearer token" in body and b"admin-token" not in body, path
        assert get(port, "/healthz")[0] == 200 and get(port, "/readyz")[0] == 200
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                         headers={"Authorization": "Bearer admin-token-7f3a91"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        shown = json.loads(run_cli("state", "show", identity, "--endpoint", f"127.0.0.1:{port}",
                                   "--token-file", str(tokens), "--json"))
        assert shown["identity"]["id"] == identity
        refused = subprocess.run([sys.executable, "-m", "otel_processor", "state", "show", identity,
                                  "--endpoint", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "401" in refused.stderr
    finally:
        service.stop(grace=2)


def test_state_by_principal_is_a_lookup_never_a_scan_of_every_identity(sink, tmp_path, monkeypatch):
    """``GET /state/<any name>`` once scanned every identity under the engine lock: with 100,000
    identities, four such clients took exports from 9 ms to 1.8 s. Scanning now fails the test."""
    from otel_processor.engine.roster import Roster

    service = start_service(sink)
    try:
        send_all(service.grpc_port, capture_requests(INSTANCE_CAPTURE, tmp_path))

        def no_scan(self):
            raise AssertionError("the roster was scanned")

        monkeypatch.setattr(Roster, "items", no_scan)
        port = service.admin_port
        status, body = get(port, "/state/arn:aws:iam::444455556666:role/app-server-role")
        assert status == 200 and json.loads(body)["identity"]["kind"] == "workload"
        assert get(port, "/state/someone-unknown")[0] == 404
    finally:
        monkeypatch.undo()
        service.stop(grace=2)


def test_the_container_health_check_asks_the_admin_port_the_config_names(sink, tmp_path):
    service = start_service(sink)
    config = tmp_path / "config.yaml"
    config.write_text(f"service:\n  listen_admin: 0.0.0.0:{service.admin_port}\n  forward: {sink.endpoint}\n")
    try:
        ok = subprocess.run([sys.executable, "-m", "otel_processor", "healthcheck", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    finally:
        service.stop(grace=1)
    down = subprocess.run([sys.executable, "-m", "otel_processor", "healthcheck", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert down.returncode == 1 and f":{service.admin_port}/healthz" in down.stderr
