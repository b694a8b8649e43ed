"""Small builders for OTLP requests used across tests (plain protobuf, no SDK state)."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_processor.anyvalue import set_value, to_python


def any_value(v) -> AnyValue:
    out = AnyValue()
    set_value(out, v)
    return out


def kvs(attrs: dict) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def attrs_of(repeated) -> dict:
    return {kv.key: to_python(kv.value) for kv in repeated}


def traces(resource: dict, *spans: dict) -> ExportTraceServiceRequest:
    """Each span dict: name, kind (SERVER=2, CLIENT=3), start (ns), attrs, status (0/1/2), ids."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs(resource))
    ss = rs.scope_spans.add()
    for i, s in enumerate(spans):
        span = ss.spans.add()
        span.name = s.get("name", "op")
        span.kind = s.get("kind", Span.SPAN_KIND_CLIENT)
        span.trace_id = s.get("trace_id", (i + 1).to_bytes(16, "big"))
        span.span_id = s.get("span_id", (i + 1).to_bytes(8, "big"))
        span.start_time_unix_nano = s.get("start", 1_700_000_000_000_000_000 + i)
        span.end_time_unix_nano = span.start_time_unix_nano + 1_000_000
        span.status.code = s.get("status", 0)
        span.attributes.extend(kvs(s.get("attrs", {})))
    return req


def logs(resource: dict, *records: dict) -> ExportLogsServiceRequest:
    """Each record dict: time (ns), attrs, body, event_name, ids."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(kvs(resource))
    sl = rl.scope_logs.add()
    for i, r in enumerate(records):
        rec = sl.log_records.add()
        rec.time_unix_nano = r.get("time", 1_700_000_000_000_000_000 + i)
        rec.body.string_value = r.get("body", "")
        if r.get("event_name"):
            rec.event_name = r["event_name"]
        if "trace_id" in r:
            rec.trace_id = r["trace_id"]
        rec.attributes.extend(kvs(r.get("attrs", {})))
    return req


def raw_trace_export(port: int):
    """(channel, method): the trace service's Export on 127.0.0.1:``port`` taking raw bytes, so a
    test can send what no client library would encode. The caller closes the channel."""
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return channel, channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                        request_serializer=lambda b: b, response_deserializer=lambda b: b)


def _length_delimited(tag: int, payload: bytes) -> bytes:
    n, out = len(payload), bytearray([tag])
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out) + payload


def empty_records(n: int) -> bytes:
    """An ExportLogsServiceRequest of ``n`` empty log records, as wire bytes: 2 bytes each, about
    130 bytes each once parsed (what a decompression bomb of records looks like)."""
    return _length_delimited(0x0A, _length_delimited(0x12, b"\x12\x00" * n))
