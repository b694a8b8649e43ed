"""What a request may cost before it is trusted (hosts/serve/admission.py), tried as an attacker
with network access to the OTLP ports would, over real sockets: records counted off the wire and
refused before the protobuf runtime builds them, gzip that expands too far, a memory budget that
refuses rather than buffers, a token checked before a gRPC body is read, and a large request
processed in parts that keep every record, in order, and the same events."""

from __future__ import annotations

import gzip
import http.client
import threading

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

from otel_processor.config import ProcessorConfig, ServiceConfig
from otel_processor.hosts.serve.admission import count_records, parts
from otel_processor.hosts.serve.service import Service
from otlp_builders import attrs_of, empty_records

pytestmark = pytest.mark.both_builds
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def start(sink, **overrides) -> Service:
    svc = ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin=None, listen_http="127.0.0.1:0",
                        forward=sink.endpoint, **overrides)
    return Service(ProcessorConfig(service=svc, state_dir=None)).start()


def post(port: int, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/logs", body=body, headers={"Content-Type": "application/x-protobuf", **headers})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def test_the_wire_count_agrees_with_the_protobuf_runtime_and_stops_at_the_cap():
    request = logs_service_pb2.ExportLogsServiceRequest()
    for r in range(3):
        entry = request.resource_logs.add()
        entry.resource.attributes.add(key="service.name").value.string_value = f"svc-{r}"
        for s in range(2):
            scope = entry.scope_logs.add()
            for k in range(r + s + 1):
                scope.log_records.add().body.string_value = f"record {k}"
    data = request.SerializeToString()
    assert count_records(data, 1000) == sum(len(sl.log_records) for rl in request.resource_logs
                                            for sl in rl.scope_logs) == 15
    assert count_records(empty_records(7_800_000), 100) == 101  # stopped just past the cap
    assert count_records(b"\xff\xff\xff", 10) == 0  # not walkable: the runtime says why


def test_a_small_request_of_millions_of_records_is_refused_before_it_is_parsed(sink):
    """15 KB of gzip, 15.6 MB, 7.8 million empty records: once 32 s of work and a gigabyte."""
    service = start(sink)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}", compression=grpc.Compression.Gzip) as channel:
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(LOGS)(empty_records(7_800_000), timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_records_per_request" in info.value.details()
        status, _, body = post(service.http_port, gzip.compress(empty_records(1_000_000)),
                               {"Content-Encoding": "gzip"})
        assert status == 413 and b"expands more than 200 times" in body
        status, _, body = post(service.http_port, empty_records(200_000), {})
        assert status == 413 and b"max_records_per_request" in body
        assert sink.log_records() == []
        assert service.metrics.snapshot()["nhi.processor.requests.refused"] >= 2
    finally:
        service.stop(grace=2)


def test_past_the_memory_budget_a_sender_is_told_to_retry_not_buffered(sink):
    """A budget a single request fills: a second one at the same time is refused with what the
    Collector's exporter retries (RESOURCE_EXHAUSTED with RetryInfo; HTTP 429 with Retry-After)."""
    service = start(sink, memory_limit_mib=1)
    try:
        assert service.budget.reserve(900 * 1024)  # a request in flight holds most of it
        request = logs_service_pb2.ExportLogsServiceRequest()
        for k in range(2000):
            request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = f"r{k}" * 20
        data = request.SerializeToString()
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(LOGS)(data, timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = dict(info.value.trailing_metadata())["grpc-status-details-bin"]
        status = status_pb2.Status.FromString(details)
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
        code, headers, _ = post(service.http_port, data, {})
        assert code == 429 and headers.get("Retry-After")
        service.budget.release(900 * 1024)
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            channel.unary_unary(LOGS)(data, timeout=30)  # the budget is free again: accepted
        assert len(sink.log_records()) == 2000
        assert service.budget.held == 0  # every reservation released
    finally:
        service.stop(grace=2)


def test_a_grpc_request_without_a_token_is_refused_before_its_body_is_read(sink, tmp_path):
    """The token is checked on the headers: a token-less 15 MB export is refused and the
    service reserves nothing for it (its body is never read into the process)."""
    tokens = tmp_path / "tokens"
    tokens.write_text("sender-token-1\n")
    svc = ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin=None, listen_http=None, forward=sink.endpoint)
    svc.auth.bearer_tokens_file = str(tokens)
    service = Service(ProcessorConfig(service=svc, state_dir=None)).start()
    reserved = []
    original = service.budget.reserve
    service.budget.reserve = lambda n: reserved.append(n) or original(n)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(LOGS)(empty_records(7_000_000), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert reserved == []
    finally:
        service.stop(grace=2)


def test_a_request_processed_in_parts_keeps_every_record_in_order_with_the_same_enrichment(sink):
    """A request over batch_part_records is split, each part queued first come first served,
    and forwarded as one: nothing lost, nothing reordered, enriched as it would be whole."""
    request = logs_service_pb2.ExportLogsServiceRequest()
    for r in range(3):
        entry = request.resource_logs.add()
        entry.resource.attributes.add(key="service.name").value.string_value = f"api-{r}"
        for s in range(2):
            scope = entry.scope_logs.add()
            scope.scope.name = f"scope-{s}"
            for k in range(700):
                record = scope.log_records.add()
                record.body.string_value = f"{r}/{s}/{k}"
                record.attributes.add(key="user.id").value.string_value = f"system:serviceaccount:ns:app-{r}"
    split = parts(request, "resource_logs", "scope_logs", "log_records", 1000)
    assert [sum(len(sl.log_records) for rl in p.resource_logs for sl in rl.scope_logs) for p in split] == \
        [1000, 1000, 1000, 1000, 200]
    bodies = {}
    for size in (1000, 100_000):
        sink.contents.logs.clear()
        service = start(sink, batch_part_records=size)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
                logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=60)
        finally:
            service.stop(grace=2)
        got = sink.log_records()
        bodies[size] = [(rl.resource.attributes[0].value.string_value, r.body.string_value,
                         attrs_of(r.attributes).get("nhi.identity.id")) for rl, r in got]
    assert len(bodies[1000]) == 4200
    assert [b for _, b, _ in bodies[1000]] == [f"{r}/{s}/{k}" for r in range(3) for s in range(2) for k in range(700)]
    assert bodies[1000] == bodies[100_000]


def test_an_export_waits_for_one_part_of_a_large_request_not_all_of_it(sink):
    """First come, first served between parts: while a request of many parts is processed, a
    small export that arrives is let in before the large request's next part."""
    from otel_processor.hosts.serve.admission import FairGate

    gate = FairGate()
    order: list[str] = []
    big_started = threading.Event()
    small_waiting = threading.Event()

    def big():
        for k in range(4):
            with gate:
                order.append(f"big-{k}")
                if k == 0:
                    big_started.set()
                    small_waiting.wait(10)
                    while len(gate._queue) == 0:  # the small export has queued behind this part
                        pass

    def small():
        big_started.wait(10)
        small_waiting.set()
        with gate:
            order.append("small")

    threads = [threading.Thread(target=big), threading.Thread(target=small)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert order == ["big-0", "small", "big-1", "big-2", "big-3"]
