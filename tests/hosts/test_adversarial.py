"""The service as an attacker and a hostile network meet it, over real sockets on 127.0.0.1.

TLS, mutual TLS and bearer tokens with the OpenTelemetry SDK's own exporters; HTTP framing
abuse (chunked, multi-member gzip, held bodies, connection floods, oversized and garbage
requests); batches crafted to slip past masking; downstreams that reject, shrink or stall.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from otel_processor.config import (
    AuthConfig,
    ClientTLSConfig,
    ExportConfig,
    ProcessorConfig,
    ServerTLSConfig,
    ServiceConfig,
)
from otel_processor.hosts.serve.service import Service
from hostile import HUGE, huge_request
from otlp_builders import attrs_of, logs, raw_trace_export, traces
from simulator.sink import OtlpSink

SECRET = "Bearer sk_live_51HtZqK2eZvKYlo2C9xADVERSARY"


def service_for(forward, **overrides) -> Service:
    svc = ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin="127.0.0.1:0", listen_http="127.0.0.1:0", forward=forward, **overrides)
    return Service(ProcessorConfig(service=svc, state_dir=None))


def some_traces(n=2):
    return traces({"service.name": "checkout"}, *[
        {"kind": 2, "attrs": {"http.request.method": "POST", "http.route": "/v1/charge",
                              "http.request.header.authorization": [SECRET]}} for _ in range(n)])


def post(port, path, body, headers, tls_context=None):
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tls_context) if tls_context
            else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


# -- certificates ------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _own_ca_bundle(monkeypatch):
    """requests lets REQUESTS_CA_BUNDLE override the exporter's certificate_file: keep it out."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    def key(name):
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key")

    for ca in ("ca", "rogue-ca"):
        key(ca)
        run("req", "-x509", "-new", "-key", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN={ca}")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext"),
                          ("rogue", "rogue-ca", "client.ext")):
        key(name)
        run("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", ext)
    return {p.stem + p.suffix.replace(".", "_"): str(p) for p in d.iterdir()}


def _sdk_export(kind, endpoint, **kwargs):
    """One span through the SDK's own OTLP exporter; True when the exporter says it succeeded."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    if kind == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "billing-worker"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("GET /ledger", kind=SpanKind.CLIENT) as span:
        span.set_attribute("http.request.method", "GET")
    provider.shutdown()
    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=5, **kwargs)
    try:
        return exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def _grpc_credentials(pki, client=None):
    read = lambda p: open(p, "rb").read()  # noqa: E731
    if client:
        return grpc.ssl_channel_credentials(read(pki["ca_crt"]), read(pki[f"{client}_key"]), read(pki[f"{client}_crt"]))
    return grpc.ssl_channel_credentials(read(pki["ca_crt"]))


def test_tls_on_both_listeners_with_the_sdk_exporters(pki, sink):
    tls = ServerTLSConfig(cert_file=pki["server_crt"], key_file=pki["server_key"])
    with service_for(sink.endpoint, tls=tls) as service:
        assert _sdk_export("grpc", f"localhost:{service.grpc_port}", credentials=_grpc_credentials(pki))
        assert _sdk_export("http", f"https://localhost:{service.http_port}/v1/traces",
                           certificate_file=pki["ca_crt"])
        assert not _sdk_export("grpc", f"localhost:{service.grpc_port}", insecure=True)  # plaintext refused
    assert len(sink.spans()) == 2


def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(pki, sink):
    tls = ServerTLSConfig(cert_file=pki["server_crt"], key_file=pki["server_key"], client_ca_file=pki["ca_crt"])
    with service_for(sink.endpoint, tls=tls) as service:
        grpc_at = f"localhost:{service.grpc_port}"
        http_at = f"https://localhost:{service.http_port}/v1/traces"
        assert not _sdk_export("grpc", grpc_at, credentials=_grpc_credentials(pki))
        assert not _sdk_export("grpc", grpc_at, credentials=_grpc_credentials(pki, "rogue"))
        assert _sdk_export("grpc", grpc_at, credentials=_grpc_credentials(pki, "client"))
        assert not _sdk_export("http", http_at, certificate_file=pki["ca_crt"])
        assert _sdk_export("http", http_at, certificate_file=pki["ca_crt"], client_certificate_file=pki["client_crt"],
                           client_key_file=pki["client_key"])
    assert len(sink.spans()) == 2


def test_a_bearer_token_is_accepted_whole_and_only_whole(tmp_path):
    from otel_processor.hosts.serve.auth import BearerTokens

    path = tmp_path / "tokens"
    path.write_text("t0ken-one\n")
    tokens = BearerTokens(str(path))
    assert tokens.allows("Bearer t0ken-one") and tokens.allows("bearer  t0ken-one ")
    for wrong in ("Bearer t0ken", "Bearer t", "Bearer t0ken-one-and-more", "Bearer T0KEN-ONE", "Basic t0ken-one",
                  "t0ken-one", "Bearer", "", None):
        assert not tokens.allows(wrong), wrong


def test_bearer_tokens_on_both_listeners(tmp_path, sink):
    tokens = tmp_path / "tokens"
    tokens.write_text("# senders\nt0ken-one\n\nt0ken-two\n")
    with service_for(sink.endpoint, auth=AuthConfig(bearer_tokens_file=str(tokens))) as service:
        grpc_at, http_at = f"127.0.0.1:{service.grpc_port}", f"http://127.0.0.1:{service.http_port}/v1/traces"
        assert _sdk_export("grpc", grpc_at, insecure=True, headers={"authorization": "Bearer t0ken-two"})
        assert _sdk_export("http", http_at, headers={"Authorization": "Bearer t0ken-one"})
        assert not _sdk_export("grpc", grpc_at, insecure=True, headers={"authorization": "Bearer wrong"})
        assert not _sdk_export("grpc", grpc_at, insecure=True)
        assert not _sdk_export("http", http_at, headers={"Authorization": "Basic dDBrZW4tb25l"})
        status, _ = post(service.http_port, "/v1/traces", some_traces().SerializeToString(),
                         {"Content-Type": "application/x-protobuf"})
        assert status == 401
        assert service.metrics.snapshot()["nhi.processor.requests.unauthenticated"] >= 4
    assert len(sink.spans()) == 2


def test_forward_over_tls_with_headers_to_an_authenticating_downstream(pki, tmp_path, sink):
    """Processor A forwards to processor B, which takes only TLS with a bearer token."""
    tokens = tmp_path / "tokens"
    tokens.write_text("downstream-secret\n")
    tls = ServerTLSConfig(cert_file=pki["server_crt"], key_file=pki["server_key"])
    with service_for(sink.endpoint, tls=tls, auth=AuthConfig(bearer_tokens_file=str(tokens))) as b:
        forward = ExportConfig(f"localhost:{b.grpc_port}", tls=ClientTLSConfig(ca_file=pki["ca_crt"]),
                               headers={"authorization": "Bearer ${env:NHI_TEST_DOWNSTREAM_TOKEN}"})
        os.environ["NHI_TEST_DOWNSTREAM_TOKEN"] = "downstream-secret"
        try:
            with service_for(forward) as a:
                channel = grpc.insecure_channel(f"127.0.0.1:{a.grpc_port}")
                trace_service_pb2_grpc.TraceServiceStub(channel).Export(some_traces(), timeout=10)
                channel.close()
        finally:
            del os.environ["NHI_TEST_DOWNSTREAM_TOKEN"]
    assert len(sink.spans()) == 2
    assert SECRET not in str(sink.contents.traces)


# -- HTTP framing and abuse -------------------------------------------------------------------------
def _raw(port, data: bytes, read_timeout=10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and b"Content-Length: " in out:
                    head, _, body = out.partition(b"\r\n\r\n")
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    if len(body) >= length:
                        break
        except socket.timeout:
            pass
    return out


def test_chunked_and_multi_member_gzip_bodies_arrive_whole(sink):
    body = some_traces(3).SerializeToString()
    with service_for(sink.endpoint) as service:
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 100]), body[i:i + 100]) for i in range(0, len(body), 100))
        reply = _raw(service.http_port, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        logs_body = logs({"service.name": "a"}, {"attrs": {"event.category": "api"}},
                         {"attrs": {"event.category": "api"}}).SerializeToString()
        half = len(logs_body) // 2  # two gzip members, each a part of the body
        assert logs_body[:half] and logs_body[half:]
        two = gzip.compress(logs_body[:half]) + gzip.compress(logs_body[half:])
        status, _ = post(service.http_port, "/v1/logs", two,
                         {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        assert status == 200
    assert len(sink.spans()) == 3 and len(sink.telemetry_log_records()) == 2


def test_oversized_garbage_and_wrong_requests_get_clear_answers(sink, caplog):
    caplog.set_level(logging.INFO)
    with service_for(sink.endpoint, max_request_bytes=64 * 1024) as service:
        port = service.http_port
        reply = _raw(port, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                           b"Content-Length: 999999999\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 413")
        assert _raw(port, b"\x16\x03\x01 not http at all\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _raw(port, b"GET /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405")
        bomb = gzip.compress(b"\0" * (10 * 1024 * 1024))  # 10 MB of zeros in ~10 KB
        status, _ = post(port, "/v1/traces", bomb, {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        assert status == 413
        status, _ = post(port, "/v1/traces", b"\x0a\xff\xff", {"Content-Type": "application/x-protobuf"})
        assert status == 400
        channel, raw = raw_trace_export(service.grpc_port)
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff", timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        channel.close()
        assert service.metrics.snapshot()["nhi.processor.requests.malformed"] >= 4
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks for bad requests"


def test_held_back_bodies_time_out_and_the_connection_cap_holds(sink, caplog):
    caplog.set_level(logging.INFO)
    with service_for(sink.endpoint, http_read_timeout_s=1.0, http_read_header_timeout_s=1.0,
                     http_max_connections=4) as service:
        port = service.http_port
        held = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                      b"Content-Length: 1000000\r\n\r\n" + b"\0" * 1000)
            held.append(s)
        for _ in range(3000):  # a hang guard: the four are accepted at once
            if service._http.connections >= 4:
                break
            time.sleep(0.01)
        assert _raw(port, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503")
        for s in held:  # without the read timeout they would wait for their megabyte for ever
            s.settimeout(30)
            assert s.recv(100).startswith(b"HTTP/1.1 408")
            s.close()
        silent = socket.create_connection(("127.0.0.1", port))  # sends nothing at all
        silent.settimeout(5)
        assert silent.recv(100).startswith(b"HTTP/1.1 408")
        silent.close()
        status, _ = post(port, "/v1/traces", some_traces().SerializeToString(), {"Content-Type": "application/x-protobuf"})
        assert status == 200  # and it still serves
    assert not [r for r in caplog.records if r.exc_info]


# -- crafted to slip past masking -----------------------------------------------------------------
def test_an_appended_empty_group_does_not_carry_a_batch_past_masking_or_the_engine(sink):
    request = some_traces(1)
    kv = request.resource_spans[0].scope_spans[0].spans[0].attributes.add()
    kv.key, kv.value.string_value = "nhi.trust.score", "1.0"  # forged
    with service_for(sink.endpoint) as service:
        channel, raw = raw_trace_export(service.grpc_port)
        raw(request.SerializeToString() + b"\x13\x14", timeout=5)
        channel.close()
    (_, span), = sink.spans()
    keys = [kv.key for kv in span.attributes]
    got = attrs_of(span.attributes)
    assert SECRET not in str(span) and keys.count("nhi.trust.score") == 1
    assert got["nhi.identity.kind"] == "api_key" and got["nhi.trust.score"] == 1.0


def test_a_batch_whose_processing_fails_leaves_masked_and_stripped(sink, monkeypatch):
    class Faulty:
        """The engine, but failing after every record was processed (a fault at batch level)."""

        def __init__(self, engine):
            self._engine = engine

        def __getattr__(self, name):
            return getattr(self._engine, name)

        def take_events(self):
            raise RuntimeError("engine fault")

    with service_for(sink.endpoint) as service:
        monkeypatch.setattr(service.processor, "engine", Faulty(service.engine))
        request = some_traces(1)
        kv = request.resource_spans[0].scope_spans[0].spans[0].attributes.add()
        kv.key, kv.value.string_value = "nhi.identity.id", "human:nobody"
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=5)
        channel.close()
    (_, span), = sink.spans()
    assert SECRET not in str(span) and "human:nobody" not in str(span)


# -- downstream answers ---------------------------------------------------------------------------
def test_a_permanent_downstream_rejection_is_passed_on_as_permanent(sink):
    sink.refuse = grpc.StatusCode.INVALID_ARGUMENT
    with service_for(sink.endpoint) as service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        with pytest.raises(grpc.RpcError) as info:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(some_traces(), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status, _ = post(service.http_port, "/v1/traces", some_traces().SerializeToString(),
                         {"Content-Type": "application/x-protobuf"})
        assert status == 400
        channel.close()
        assert service.metrics.snapshot()["nhi.processor.downstream.rejected"] == 4


def test_a_batch_over_the_downstreams_limit_is_split_until_it_fits():
    with OtlpSink(max_receive_bytes=16 * 1024) as small:
        request = logs({"service.name": "writer"}, *[
            {"attrs": {"event.category": "api", "event.action": "write", "payload": "x" * 400, "n": i}}
            for i in range(200)])
        assert request.ByteSize() > 64 * 1024
        with service_for(small.endpoint) as service:
            channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
            logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=20)
            channel.close()
            assert service.metrics.snapshot()["nhi.processor.downstream.splits"] >= 4
        got = sorted(attrs_of(r.attributes)["n"] for r in small.telemetry_log_records())
    assert got == list(range(200))


def test_a_slow_downstream_is_not_sent_twice_and_the_engine_does_not_count_twice(sink):
    sink.delay_s = 1.5
    request = logs({"service.name": "a"}, *[{"attrs": {"event.category": "api", "event.action": "read",
                                                       "user.id": "svc-reader"}} for _ in range(3)])
    with service_for(sink.endpoint, forward_timeout_s=0.5) as service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Export(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert sink.wait_for(lambda s: len(s.telemetry_log_records()) >= 3, 30)  # the first attempt got through
        stub.Export(request, timeout=10)  # the sender's retry
        channel.close()
        profile = service.engine._roster.peek("service_account:svc-reader")
        assert profile.count == 3
        assert service.metrics.snapshot()["nhi.processor.retries.recognised"] == 3
    assert len(sink.telemetry_log_records()) == 3


def test_a_retry_after_the_senders_deadline_is_not_delivered_twice(sink):
    """A sender whose deadline passes while the batch is being delivered counts the export as
    failed and sends it again (what the Rotel front collector does under load): the retry is
    acknowledged, not processed or forwarded a second time."""
    sink.delay_s = 1.0
    request = logs({"service.name": "a"}, *[{"attrs": {"event.category": "api", "event.action": "read",
                                                       "user.id": "svc-late"}} for _ in range(3)])
    with service_for(sink.endpoint) as service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Export(request, timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert sink.wait_for(lambda s: len(s.telemetry_log_records()) >= 3, 30)
        assert _wait_until(lambda: service.metrics.snapshot().get("nhi.processor.batches.after_deadline") == 1)
        stub.Export(request, timeout=10)  # the sender's retry
        channel.close()
        assert service.engine._roster.peek("service_account:svc-late").count == 3
        assert service.metrics.snapshot()["nhi.processor.retries.recognised"] == 3
    assert len(sink.telemetry_log_records()) == 3


def _wait_until(condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_retry_after_a_downstream_failure_is_not_learnt_twice(sink):
    request = logs({"service.name": "a"}, *[{"attrs": {"event.category": "api", "event.action": "read",
                                                       "user.id": "svc-reader"}} for _ in range(4)])
    with service_for(sink.endpoint) as service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        sink.refuse = True
        with pytest.raises(grpc.RpcError):
            stub.Export(request, timeout=10)
        sink.refuse = False
        stub.Export(request, timeout=10)
        channel.close()
        assert service.engine._roster.peek("service_account:svc-reader").count == 4
    got = [attrs_of(r.attributes) for r in sink.telemetry_log_records()]
    assert len(got) == 4 and all(g["nhi.identity.id"] == "service_account:svc-reader" for g in got)


def test_an_outage_is_logged_when_it_starts_and_when_it_ends(sink, caplog):
    caplog.set_level(logging.WARNING)
    with service_for(sink.endpoint) as service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        sink.refuse = True
        for _ in range(3):
            with pytest.raises(grpc.RpcError):
                stub.Export(some_traces(), timeout=5)
        sink.refuse = False
        stub.Export(some_traces(), timeout=5)
        channel.close()
    said = [r.getMessage() for r in caplog.records if "outage" in r.getMessage()]
    assert len(said) == 2 and "started" in said[0] and "ended" in said[1] and "3 batches" in said[1]


# -- bounded work per record --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HUGE))
def test_a_megabyte_field_is_processed_and_forwarded_whole(name):
    """What each costs is measured by ``benchmarks/hostile.py``, not asserted here: the record
    comes out attributed, with every attribute it came in with and none of them cut."""
    from otel_processor.outputs.redact import mask_text
    from otel_processor.pipeline import BatchProcessor

    signal, request = huge_request(name)
    sent = {kv.key: kv.value.string_value for kv in _only_record(signal, request).attributes}
    processor = BatchProcessor()
    (processor.process_traces if signal == "traces" else processor.process_logs)(request)
    got = {kv.key: kv.value.string_value for kv in _only_record(signal, request).attributes}
    assert got["nhi.identity.id"]
    # every attribute it came in with, whole, but for a credential in it, masked
    assert {k: v for k, v in got.items() if not k.startswith("nhi.")} == {k: mask_text(v) for k, v in sent.items()}


def _only_record(signal, request):
    if signal == "traces":
        (rs,) = request.resource_spans
        (record,) = rs.scope_spans[0].spans
    else:
        (rl,) = request.resource_logs
        (record,) = rl.scope_logs[0].log_records
    return record
