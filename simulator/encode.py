"""Simulated records into OTLP export requests, batched per signal as a collector would send them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_processor.anyvalue import set_value

from .records import SimRecord

SCOPE = "nhi-sim"


def _add_attributes(repeated, attrs) -> None:
    for key, data in attrs:
        kv = repeated.add()
        kv.key = key
        set_value(kv.value, data)


def encode(records: list[SimRecord], signal: str):
    """One request for records of one signal, grouped by resource (record order kept per resource)."""
    request = ExportTraceServiceRequest() if signal == "traces" else ExportLogsServiceRequest()
    scopes: dict = {}
    for r in records:
        scope = scopes.get(r.resource)
        if scope is None:
            if signal == "traces":
                holder = request.resource_spans.add()
                scope = holder.scope_spans.add()
            else:
                holder = request.resource_logs.add()
                scope = holder.scope_logs.add()
            _add_attributes(holder.resource.attributes, r.resource)
            scope.scope.name = SCOPE
            scopes[r.resource] = scope
        if signal == "traces":
            span = scope.spans.add()
            span.trace_id, span.span_id = r.trace_id, r.span_id
            span.name = r.name
            span.kind = r.span_kind
            span.start_time_unix_nano = r.time_ns
            span.end_time_unix_nano = r.time_ns + r.duration_ns
            if r.error:
                span.status.code = 2
            _add_attributes(span.attributes, r.attributes.items())
        else:
            rec = scope.log_records.add()
            rec.time_unix_nano = r.time_ns
            rec.observed_time_unix_nano = r.time_ns
            rec.trace_id, rec.span_id = r.trace_id, r.span_id
            if r.name:
                rec.event_name = r.name
            if r.body_object is not None:
                set_value(rec.body, r.body_object)
            elif r.body:
                rec.body.string_value = r.body
            rec.severity_number = 9
            _add_attributes(rec.attributes, r.attributes.items())
    return request


def batches(records: Iterable[SimRecord], max_records: int = 512,
            max_span_ns: int = 60 * 10**9) -> Iterator[tuple[str, object, int]]:
    """(signal, request, last event time) per batch: per signal, up to ``max_records`` or a minute
    of event time, flushed in event-time order as a collector's batch processor would (its
    200 ms timeout is about a minute of event time in a fast replay of a busy fleet)."""
    pending: dict[str, list[SimRecord]] = {"traces": [], "logs": []}
    for r in records:
        bucket = pending[r.signal]
        if bucket and (len(bucket) >= max_records or r.time_ns - bucket[0].time_ns > max_span_ns):
            other = "logs" if r.signal == "traces" else "traces"
            # keep the two signals in event-time order relative to each other
            if pending[other] and pending[other][0].time_ns <= bucket[0].time_ns:
                yield other, encode(pending[other], other), pending[other][-1].time_ns
                pending[other] = []
            yield r.signal, encode(bucket, r.signal), bucket[-1].time_ns
            pending[r.signal] = bucket = []
        bucket.append(r)
    for signal in sorted(pending, key=lambda s: pending[s][0].time_ns if pending[s] else 0):
        if pending[signal]:
            yield signal, encode(pending[signal], signal), pending[signal][-1].time_ns


def reversed_resources(requests: Iterable[tuple[str, object, int]]) -> Iterator[tuple[str, object, int]]:
    """Every request with its resources in the opposite order (as another Collector, or Rotel's
    agent, may hand them on): for checking that detection does not depend on that order."""
    for signal, request, last in requests:
        out = type(request)()
        entries = request.resource_spans if signal == "traces" else request.resource_logs
        (out.resource_spans if signal == "traces" else out.resource_logs).extend(reversed(entries))
        yield signal, out, last
