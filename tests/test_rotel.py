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
