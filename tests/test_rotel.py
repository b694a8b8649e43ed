"""The real Rotel collector binary (from the ``rotel`` wheel), in two topologies, over real sockets.

(a) Rotel hosts the engine in-process (``nhi-processor rotel``);
(b) Rotel is the front collector and exports OTLP to the processor service.
Both must deliver every record and detect the same identities as the processor service alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from otel_processor.config import ProcessorConfig, ServiceConfig
from simulator.sink import OtlpSink
from otel_processor.anyvalue import to_python as any_to_py
from otel_processor.hosts.serve.service import Service
from simulator.bench import collect_events
from simulator.encode import batches
from simulator.replay import replay
from simulator.scenarios import load_scenarios
from simulator.world import build_world

rotel = pytest.importorskip("rotel", reason="the rotel wheel is in the test extra")
pytestmark = pytest.mark.rotel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listening on {port}")


@pytest.fixture(scope="module")
def world():
    return build_world(load_scenarios(), 60, 3, seed=9)


def delivered(sink: OtlpSink) -> int:
    return len(sink.spans()) + len(sink.telemetry_log_records())


def detections(sink: OtlpSink) -> set[str]:
    return {e.identity_id for e in collect_events(sink)}


@pytest.fixture(scope="module")
def reference(world):
    """What the processor service alone detects on this replay."""
    with OtlpSink() as sink:
        config = ProcessorConfig(service=ServiceConfig(listen_grpc="127.0.0.1:0", listen_http=None,
                                                       forward=sink.endpoint), state_dir=None)
        with Service(config) as service:
            sent = replay(batches(world.records), f"127.0.0.1:{service.grpc_port}", progress=False)
        assert delivered(sink) == sent
        return detections(sink)


def start_rotel(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_rotel_hosts_the_engine_in_process(world, reference):
    assert reference, "the reference replay must detect something for the comparison to mean anything"
    with OtlpSink() as sink:
        grpc_port, http_port = free_port(), free_port()
        proc = start_rotel([sys.executable, "-m", "otel_processor", "rotel", "--listen-grpc",
                            f"127.0.0.1:{grpc_port}", "--listen-http", f"127.0.0.1:{http_port}",
                            "--forward", sink.endpoint])
        try:
            wait_port(grpc_port)
            sent = replay(batches(world.records), f"127.0.0.1:{grpc_port}", progress=False)
            assert sink.wait_for(lambda s: delivered(s) >= sent, 90)
            expected = len(reference)
            sink.wait_for(lambda s: len(detections(s)) >= expected, 10)
        finally:
            code = stop(proc)
        assert code == 0, proc.stdout.read()[-2000:]
        assert delivered(sink) == sent
        found = detections(sink)
        spans = sink.spans()
        ids = [any_to_py(kv.value) for _, s in spans[:50] for kv in s.attributes if kv.key == "nhi.identity.id"]
    assert len(ids) == 50, "Rotel-hosted records are enriched"
    assert found == reference


def test_rotel_front_collector_exports_to_the_processor(world, reference):
    with OtlpSink() as sink:
        config = ProcessorConfig(service=ServiceConfig(listen_grpc="127.0.0.1:0", listen_http=None,
                                                       forward=sink.endpoint), state_dir=None)
        with Service(config) as service:
            grpc_port, http_port = free_port(), free_port()
            proc = start_rotel([os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"), "start",
                                "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
                                "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
                                "--exporter", "otlp", "--otlp-exporter-protocol", "grpc",
                                "--otlp-exporter-endpoint", f"http://127.0.0.1:{service.grpc_port}"])
            try:
                wait_port(grpc_port)
                sent = replay(batches(world.records), f"127.0.0.1:{grpc_port}", progress=False)
                assert sink.wait_for(lambda s: delivered(s) >= sent, 90)
            finally:
                code = stop(proc)
        assert code == 0
        assert delivered(sink) == sent
        assert detections(sink) == reference


def test_rotel_masks_everywhere_and_keeps_array_order():
    """The same masking as serve, on every field Rotel lets a processor see; arrays come out in the
    order they came in (Rotel 0.0.1a15 reverses arrays a processor has read)."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    import grpc

    from otlp_builders import any_value, logs, traces

    secret = "ghp_" + "K" * 36
    spans = traces({"service.name": "api", "tags": ["a", "b", "c"]},
                   {"kind": 3, "attrs": {"http.request.method": "GET", "list": ["x", "y", "z"],
                                         "nested": {"m": [1, 2, 3]}, "Authorization": f"Bearer {secret}"}})
    span = spans.resource_spans[0].scope_spans[0].spans[0]
    span.name = f"GET /cb?token={secret}"
    span.status.message = f"401 with {secret}"
    span.events.add(name="exception").attributes.add(key="exception.message").value.string_value = f"bad {secret}"
    span.links.add(trace_id=b"\x02" * 16, span_id=b"\x03" * 8).attributes.add(
        key="http.request.header.x-api-key").value.string_value = secret
    log_request = logs({"service.name": "api"}, {"attrs": {"event.category": "api", "user.id": "svc-a"}})
    log_request.resource_logs[0].scope_logs[0].log_records[0].body.CopyFrom(any_value(["first", f"password={secret}"]))
    metrics = metrics_service_pb2.ExportMetricsServiceRequest()
    metric = metrics.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "requests"
    point = metric.sum.data_points.add()
    point.as_int = 1
    point.attributes.add(key="http.request.header.authorization").value.string_value = secret
    with OtlpSink() as sink:
        grpc_port, http_port = free_port(), free_port()
        proc = start_rotel([sys.executable, "-m", "otel_processor", "rotel", "--listen-grpc", f"127.0.0.1:{grpc_port}",
                            "--listen-http", f"127.0.0.1:{http_port}", "--forward", sink.endpoint])
        try:
            wait_port(grpc_port)
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(spans, timeout=10)
            logs_service_pb2_grpc.LogsServiceStub(channel).Export(log_request, timeout=10)
            metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics, timeout=10)
            channel.close()
            assert sink.wait_for(lambda s: s.spans() and s.telemetry_log_records() and s.contents.metrics, 30)
        finally:
            stop(proc)
        out = str(sink.contents.traces) + str(sink.contents.logs) + str(sink.contents.metrics)
        (resource, got), = sink.spans()
        (_, record), = [(r, x) for r, x in sink.log_records() if x.event_name != "nhi.convergence"]
    assert secret not in out
    attrs = {kv.key: any_to_py(kv.value) for kv in got.attributes}
    assert attrs["list"] == ["x", "y", "z"] and attrs["nested"] == {"m": [1, 2, 3]}
    assert {kv.key: any_to_py(kv.value) for kv in resource.resource.attributes}["tags"] == ["a", "b", "c"]
    assert any_to_py(record.body)[0] == "first" and attrs["nhi.identity.id"] == "workload:api"
