"""The OTLP service over real sockets on 127.0.0.1: round trips, outage, bad input, shutdown."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from otel_processor.config import ProcessorConfig, ServiceConfig
from simulator.sink import OtlpSink
from otel_processor.otlp_json import to_otlp_json
from otel_processor.hosts.serve.service import Service

from otlp_builders import attrs_of, logs, raw_trace_export, traces

SECRET = "Bearer sk_live_51HtZqK2eZvKYlo2C9xTESTSECRET"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_for(sink: OtlpSink, **service_overrides) -> Service:
    svc = ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin="127.0.0.1:0", listen_http="127.0.0.1:0", forward=sink.endpoint,
                        **service_overrides)
    return Service(ProcessorConfig(service=svc, state_dir=None))


def sample_traces():
    return traces(
        {"service.name": "checkout", "service.namespace": "shop"},
        {"kind": 3, "attrs": {"http.request.method": "GET", "url.path": "/api/orders/123",
                              "server.address": "orders.internal"}},
        {"kind": 2, "attrs": {"http.request.method": "POST", "http.route": "/v1/charge",
                              "http.request.header.authorization": [SECRET]}},
    )


def sample_logs():
    return logs(
        {"host.name": "log-shipper-1"},
        {"attrs": {"event.category": "authentication", "event.action": "token.issued",
                   "user.id": "system:serviceaccount:payments:api", "event.outcome": "success",
                   "source.address": "10.1.2.3"}},
        {"attrs": {"note": "nobody did this"}},
    )


def test_grpc_round_trip_enriches_and_masks(sink):
    with service_for(sink) as service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(sample_traces(), timeout=5)
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(sample_logs(), timeout=5)
        channel.close()
    spans = [attrs_of(span.attributes) for _, span in sink.spans()]
    assert spans[0]["nhi.identity.id"] == "workload:shop/checkout"
    assert spans[1]["nhi.identity.kind"] == "api_key"
    assert SECRET not in json.dumps(spans)
    assert spans[1]["http.request.header.authorization"][0].startswith("sha256:")
    records = [attrs_of(r.attributes) for r in sink.telemetry_log_records()]
    assert records[0]["nhi.identity.id"] == "workload:system:serviceaccount:payments:api"
    assert records[1] == {"note": "nobody did this"}  # unattributable: unchanged


def test_sdk_exporters_grpc_and_http(sink):
    """The OpenTelemetry SDK's own OTLP exporters as clients."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind

    with service_for(sink) as service:
        for exporter in (GrpcExporter(endpoint=f"127.0.0.1:{service.grpc_port}", insecure=True),
                         HttpExporter(endpoint=f"http://127.0.0.1:{service.http_port}/v1/traces")):
            provider = TracerProvider(resource=Resource.create({"service.name": "billing-worker"}))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            with provider.get_tracer("t").start_as_current_span("GET /ledger", kind=SpanKind.CLIENT) as span:
                span.set_attribute("http.request.method", "GET")
            provider.shutdown()
    ids = [attrs_of(s.attributes).get("nhi.identity.id") for _, s in sink.spans()]
    assert ids == ["workload:billing-worker", "workload:billing-worker"]


def _post(port: int, path: str, body: bytes, content_type: str, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def test_http_protobuf_json_and_gzip(sink):
    with service_for(sink) as service:
        status, _, _ = _post(service.http_port, "/v1/traces", sample_traces().SerializeToString(),
                             "application/x-protobuf")
        assert status == 200
        body = json.dumps(to_otlp_json(sample_logs())).encode()
        status, headers, data = _post(service.http_port, "/v1/logs", body, "application/json")
        assert status == 200 and headers["Content-Type"] == "application/json"
        status, _, _ = _post(service.http_port, "/v1/logs", gzip.compress(sample_logs().SerializeToString()),
                             "application/x-protobuf", {"Content-Encoding": "gzip"})
        assert status == 200
    assert len(sink.spans()) == 2
    assert len(sink.telemetry_log_records()) == 4
    # JSON ids are hex on the wire and must arrive as the same bytes.
    sent = sample_logs().resource_logs[0].scope_logs[0].log_records[0]
    got = sink.telemetry_log_records()[0]
    assert got.trace_id == sent.trace_id


def test_malformed_and_oversized_requests_keep_the_service_up(sink):
    with service_for(sink, max_request_bytes=64 * 1024) as service:
        status, _, data = _post(service.http_port, "/v1/traces", b"\xff\xff\xff not protobuf",
                                "application/x-protobuf")
        assert status == 400
        assert b"not a valid OTLP protobuf" in status_pb2.Status.FromString(data).message.encode()
        status, _, data = _post(service.http_port, "/v1/logs", b"{not json", "application/json")
        assert status == 400 and b"JSON" in data
        status, _, _ = _post(service.http_port, "/v1/logs", b"x" * (65 * 1024), "application/x-protobuf")
        assert status == 413
        status, _, _ = _post(service.http_port, "/v1/logs", b"", "text/plain")
        assert status == 415
        channel, raw = raw_trace_export(service.grpc_port)
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff", timeout=5)
        assert info.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\x0a" + b"\xff" * (70 * 1024), timeout=5)
        assert info.value.code() != grpc.StatusCode.UNAVAILABLE  # permanent: retrying cannot help
        # still serving
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(sample_traces(), timeout=5)
        channel.close()
        assert service.metrics.snapshot().get("nhi.processor.requests.malformed", 0) >= 4
    assert len(sink.spans()) == 2


def test_downstream_outage_is_retryable_and_nothing_is_lost(sink):
    with service_for(sink, forward_timeout_s=1.0) as service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        sink.refuse = True
        with pytest.raises(grpc.RpcError) as info:
            stub.Export(sample_logs(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        details = dict(info.value.trailing_metadata())["grpc-status-details-bin"]
        status = status_pb2.Status.FromString(details)
        retry = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(retry) and retry.retry_delay.ToNanoseconds() > 0
        status_code, headers, _ = _post(service.http_port, "/v1/logs", sample_logs().SerializeToString(),
                                        "application/x-protobuf")
        assert status_code == 503 and int(headers["Retry-After"]) >= 1
        # The sender retries as a collector would: the batch arrives once downstream is back.
        threading.Timer(0.5, lambda: setattr(sink, "refuse", False)).start()
        delivered = False
        for _ in range(40):
            try:
                stub.Export(sample_logs(), timeout=5)
                delivered = True
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                time.sleep(0.1)
        channel.close()
    assert delivered
    assert len(sink.telemetry_log_records()) == 2


def test_http_forwarding_passes_on_only_what_downstream_accepted():
    """--forward http://...: a record is acknowledged upstream only when the OTLP/HTTP downstream
    answered 2xx; a 503 is a retryable refusal upstream and nothing counts as delivered."""
    with OtlpSink(http=True) as http_sink:
        config = ProcessorConfig(service=ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin="127.0.0.1:0", listen_http=None,
                                                       forward=http_sink.http_endpoint), state_dir=None)
        with Service(config) as service:
            channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
            stub = logs_service_pb2_grpc.LogsServiceStub(channel)
            stub.Export(sample_logs(), timeout=5)
            assert len(http_sink.telemetry_log_records()) == 2
            assert attrs_of(http_sink.telemetry_log_records()[0].attributes)["nhi.identity.kind"] == "workload"
            http_sink.refuse = True
            with pytest.raises(grpc.RpcError) as info:
                stub.Export(sample_logs(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert http_sink.refused_requests >= 1
            http_sink.refuse = False
            stub.Export(sample_logs(), timeout=5)
            channel.close()
        assert len(http_sink.telemetry_log_records()) == 4
        assert service.metrics.snapshot()["nhi.processor.downstream.failures"] >= 1


@pytest.mark.parametrize("downstream", ["grpc", "http"])
def test_a_downstream_partial_success_reaches_the_sender_as_downstream_gave_it(downstream, caplog):
    """A backend over its quota accepts an export but drops part of it: the sender must hear
    the same, not full success; the service says it once a minute and counts every record."""
    import logging

    with OtlpSink(http=True) as back:
        back.partial = (2, "quota exceeded for tenant acme: 2 log records dropped")
        forward = back.endpoint if downstream == "grpc" else back.http_endpoint
        config = ProcessorConfig(service=ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin=None,
                                                       listen_http="127.0.0.1:0", forward=forward), state_dir=None)
        with caplog.at_level(logging.WARNING), Service(config) as service:
            with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
                answers = [logs_service_pb2_grpc.LogsServiceStub(channel).Export(sample_logs(), timeout=10)
                           for _ in range(2)]
            body = sample_logs().SerializeToString()
            conn = http.client.HTTPConnection("127.0.0.1", service.http_port, timeout=10)
            conn.request("POST", "/v1/logs", body=body, headers={"Content-Type": "application/x-protobuf"})
            reply = conn.getresponse()
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

            over_http = ExportLogsServiceResponse.FromString(reply.read())
            conn.close()
            counted = service.metrics.snapshot().get("nhi.processor.downstream.partial")
        for answer in (*answers, over_http):
            assert answer.partial_success.rejected_log_records == 2
            assert answer.partial_success.error_message == back.partial[1]
        assert counted == 6
        said = [r for r in caplog.records if "dropped 2 of its records" in r.getMessage()]
        assert len(said) == 1 and "quota exceeded" in said[0].getMessage()


def test_event_encoding_carries_the_incident_and_its_rule():
    from otel_processor.model import ConvergenceEvent, Identity
    from otel_processor.outputs.events import events_request

    ident = Identity("workload:x", "workload", "x", "service.name", owner="team@acme.example")
    event = ConvergenceEvent("c1", ident, 0.93, ("app", "auth"), ("volume: 20x",), 1, 2, 3, b"\x01" * 16,
                             b"\x02" * 8, ("01" * 16,), ("human:ana",), "body text", "A rule name",
                             "Credential Access", ("T1552", "NHI2:2025"), "what it means", version=2)
    record = events_request([event], "nhi-test").resource_logs[0].scope_logs[0].log_records[0]
    got = attrs_of(record.attributes)
    assert (record.event_name, record.severity_text, record.body.string_value) == ("nhi.convergence", "FATAL",
                                                                                   "body text")
    assert got["nhi.convergence.severity"] == "critical"  # 0.93: the band, beside the OTLP severity
    assert got["security_rule.name"] == "A rule name"
    assert got["security_rule.category"] == "Credential Access"
    assert "T1552" in got["security_rule.reference"] and "NHI2:2025" in got["security_rule.reference"]
    assert (got["nhi.convergence.id"], got["nhi.convergence.version"], got["nhi.identity.owner"]) == \
           ("c1", 2, "team@acme.example")
    assert got["nhi.convergence.signals"] == ["app", "auth"] and got["nhi.identity.related"] == ["human:ana"]
    assert record.trace_id == b"\x01" * 16


def test_metrics_pass_through_untouched(sink):
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    attr = rm.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "api"
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = "http.server.request.duration"
    for k in range(3):
        point = metric.gauge.data_points.add()
        point.as_double, point.time_unix_nano = 0.25, 1 + k
    with service_for(sink) as service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(request, timeout=5)
        channel.close()
        received = service.metrics.snapshot()["nhi.processor.records.received"]
    assert sink.contents.metrics[0] == request
    assert received == 3  # a metric's records are its data points


def _spawn(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "otel_processor", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_bad_config_exits_2_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("service:\n  forward: 12\n  listen_grpc: no-port-here\n")
    proc = _spawn(["serve", "--config", str(bad)])
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"{bad}:2:" in err and "HOST:PORT" in err


def test_serve_without_config_starts_and_sigterm_drains(sink, tmp_path):
    """Real ``nhi-processor serve`` process: default config plus ports; SIGTERM mid-batch."""
    grpc_port = free_port()
    proc = _spawn(["serve", "--listen-admin", "", "--listen-grpc", f"127.0.0.1:{grpc_port}", "--listen-http", "",
                   "--forward", sink.endpoint], {"NHI_STATE_DIR": str(tmp_path / "state")})
    try:
        line = proc.stdout.readline()
        assert "listening" in line, proc.stderr.read()
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        big = logs({"service.name": "batch-writer"},
                   *[{"attrs": {"event.category": "api", "event.action": "write", "n": i}} for i in range(20000)])
        sink.hold = threading.Event()  # downstream answers only when told: the batch is then in flight
        future = stub.Export.future(big, timeout=60)
        assert sink.wait_for(lambda s: s.arrived > 0, 60), "the batch reached downstream"
        proc.send_signal(signal.SIGTERM)
        sink.hold.set()
        future.result()  # the in-flight batch is answered OK, not cut off
        assert proc.wait(timeout=30) == 0
        channel.close()
    finally:
        if sink.hold is not None:
            sink.hold.set()
        if proc.poll() is None:
            proc.kill()
    assert len(sink.telemetry_log_records()) == 20000


@pytest.mark.slow
def test_replay_25000_mixed_records_all_delivered_and_attributed(sink):
    """25,000 spans and log records through ``nhi-processor serve --listen-grpc A --forward B``."""
    from otel_processor.pipeline import BatchProcessor

    grpc_port = free_port()
    proc = _spawn(["serve", "--listen-admin", "", "--listen-grpc", f"127.0.0.1:{grpc_port}", "--listen-http", "",
                   "--forward", sink.endpoint])
    batches = []
    for b in range(50):
        if b % 2:
            batches.append(("logs", logs({"service.name": "audit"}, *[
                {"attrs": {"event.category": "authentication", "event.action": "token.issued",
                           "user.id": f"svc-report-{(b * 7 + i) % 40}", "source.address": f"10.0.{b}.{i % 250}"}}
                for i in range(500)])))
        else:
            batches.append(("traces", traces({"service.name": f"api-{b % 5}"}, *[
                {"kind": 3 if i % 3 else 2, "attrs": {"http.request.method": "GET", "url.path": f"/items/{i}",
                                                      "http.request.header.x-api-key": f"key-{i % 9}"}}
                for i in range(500)])))
    try:
        assert "listening" in proc.stdout.readline()
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stubs = {"traces": trace_service_pb2_grpc.TraceServiceStub(channel).Export,
                 "logs": logs_service_pb2_grpc.LogsServiceStub(channel).Export}
        for signal_name, request in batches:
            stubs[signal_name](request, timeout=30)
        channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    got = [attrs_of(s.attributes) for _, s in sink.spans()] + [attrs_of(r.attributes) for r in sink.telemetry_log_records()]
    assert len(got) == 25000
    # Attribution as the library resolves the same records, not a hard-coded expectation.
    reference = BatchProcessor()
    expected = []
    for signal_name, request in batches:
        copy = type(request).FromString(request.SerializeToString())
        (reference.process_traces if signal_name == "traces" else reference.process_logs)(copy)
        items = ([s for rs in copy.resource_spans for ss in rs.scope_spans for s in ss.spans]
                 if signal_name == "traces" else
                 [r for rl in copy.resource_logs for sl in rl.scope_logs for r in sl.log_records])
        expected += [attrs_of(x.attributes).get("nhi.identity.id") for x in items]
    got_ids = [g.get("nhi.identity.id") for g in got]
    assert sorted(map(str, got_ids)) == sorted(map(str, expected))
    assert all(g.get("nhi.identity.id") for g in got)
    assert not any("key-" in json.dumps(g) for g in got)


def test_undeliverable_events_are_held_then_dropped_oldest_first_and_counted(sink):
    from collections import deque

    from otel_processor.config import EventsConfig
    from otel_processor.model import ConvergenceEvent, Identity

    ident = Identity("workload:x", "workload", "x", "service.name")
    events = [ConvergenceEvent(f"c{i}", ident, 0.9, ("app",), ("volume: x",), 1, 2, 3, b"", b"", (), (), "body",
                               "rule", "category", ("ref",), "description") for i in range(5)]
    config = ProcessorConfig(service=ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin="127.0.0.1:0", listen_http=None,
                                                   forward=sink.endpoint),
                             events=EventsConfig(endpoint=f"127.0.0.1:{free_port()}"), state_dir=None)
    with Service(config) as service:
        service._pending_events = deque(maxlen=3)
        service._send_events(events[:2])  # nobody listens on the events endpoint
        service._send_events(events[2:])
        held = [e.convergence_id for e in service._pending_events]
        counts = service.metrics.snapshot()
    assert held == ["c2", "c3", "c4"]
    assert counts["nhi.processor.events.dropped"] == 2
    assert counts["nhi.processor.events.export_failures"] == 2 + 3


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_replay_says_the_processor_answered_and_its_downstream_is_down(protocol, capsys):
    """Before: `cannot connect ... (is anything listening there?)` about a processor that did
    answer (gRPC), and silent retries (HTTP). Now the part that failed is named."""
    from simulator.replay import ReplayError, Sender

    with OtlpSink() as down:
        down.refuse = True
        with service_for(down) as service:
            endpoint = (f"127.0.0.1:{service.grpc_port}" if protocol == "grpc"
                        else f"http://127.0.0.1:{service.http_port}")
            sender = Sender(endpoint, timeout_s=10, give_up_s=1.0)
            with pytest.raises(ReplayError) as info:
                sender.send("logs", sample_logs().SerializeToString())
            sender.close()
    said = capsys.readouterr().err + str(info.value)
    assert "is anything listening" not in said
    assert "answered, but refuses for now" in said and "downstream" in said, said
