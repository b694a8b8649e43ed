"""Rotel's Python objects to OTLP protobuf and back, whole.

Each Rotel batch (one ``ResourceSpans`` or ``ResourceLogs`` or ``ResourceMetrics``) is copied into
an export request with every field the batch path may read or mask (names, trace state,
attributes at every level, span events and links, status messages, log bodies and severity,
metric data points), and after processing everything is written back from the request, so that
what Rotel exports is exactly what ``serve`` would forward.

Rotel 0.0.1a15 quirk, measured (tests/test_rotel.py keeps it honest): every array value in a
batch a processor has read is exported in reverse order, nested arrays included. Arrays are
therefore written back reversed, which Rotel turns the right way round again.
"""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ...anyvalue import set_value, to_python

# Rotel's metric data is a tagged union (``metric.data[0]`` is a Gauge, a Sum...).
_POINT_KINDS = {"Gauge": "gauge", "Sum": "sum", "Histogram": "histogram",
                "ExponentialHistogram": "exponential_histogram", "Summary": "summary"}


# -- Rotel -> protobuf ---------------------------------------------------------------------------
def value_of(any_value):
    """A Rotel AnyValue's ``.value``. Rotel 0.0.1a15's getter panics on an AnyValue that holds no
    value (a JSON null in a map body, ``"responseElements": null`` in every CloudTrail record);
    an uncaught panic kills the whole agent, so it is caught here and read as no value."""
    if any_value is None:
        return None
    try:
        return any_value.value
    except BaseException as exc:  # noqa: BLE001 - pyo3's PanicException derives from BaseException
        if type(exc).__name__ != "PanicException":
            raise
        return None


def rotel_python(value):
    """A Rotel AnyValue's ``.value`` as plain Python (its ArrayValue and KeyValueList iterate)."""
    if value is None or isinstance(value, (str, bool, int, float, bytes, bytearray)):
        return value
    items = list(value)
    if items and hasattr(items[0], "key"):
        return {kv.key: rotel_python(value_of(kv.value)) for kv in items}
    return [rotel_python(value_of(item)) for item in items]


def _copy_attributes(repeated, attributes) -> None:
    for kv in attributes or ():
        out = repeated.add()
        out.key = kv.key
        set_value(out.value, rotel_python(value_of(kv.value)))


def _copy_scope(proto_scope, rotel_scope) -> None:
    if rotel_scope is None:
        return
    proto_scope.name = rotel_scope.name or ""
    proto_scope.version = rotel_scope.version or ""
    _copy_attributes(proto_scope.attributes, rotel_scope.attributes)


def _copy_span(out, span) -> None:
    out.trace_id = bytes(span.trace_id)
    out.span_id = bytes(span.span_id)
    out.parent_span_id = bytes(span.parent_span_id or b"")
    out.trace_state = span.trace_state or ""
    out.name = span.name or ""
    out.kind = int(span.kind)
    out.start_time_unix_nano = span.start_time_unix_nano
    out.end_time_unix_nano = span.end_time_unix_nano
    out.flags = int(span.flags or 0)
    if span.status is not None:
        out.status.code = int(span.status.code)
        out.status.message = span.status.message or ""
    _copy_attributes(out.attributes, span.attributes)
    for event in span.events:
        e = out.events.add()
        e.name, e.time_unix_nano = event.name or "", event.time_unix_nano
        _copy_attributes(e.attributes, event.attributes)
    for link in span.links:
        link_out = out.links.add()
        link_out.trace_id, link_out.span_id = bytes(link.trace_id), bytes(link.span_id)
        link_out.trace_state = link.trace_state or ""
        _copy_attributes(link_out.attributes, link.attributes)


def _copy_log(out, record) -> None:
    out.time_unix_nano = record.time_unix_nano
    out.observed_time_unix_nano = record.observed_time_unix_nano
    out.trace_id = bytes(record.trace_id)
    out.span_id = bytes(record.span_id)
    out.severity_number = int(record.severity_number or 0)
    out.severity_text = record.severity_text or ""
    out.flags = int(record.flags or 0)
    name = getattr(record, "event_name", None)
    if name:
        out.event_name = name
    if record.body is not None:
        set_value(out.body, rotel_python(value_of(record.body)))
    _copy_attributes(out.attributes, record.attributes)


def to_request(signal: str, batch):
    """(request, [(rotel scope container, proto scope container)], [(rotel record, proto record)])."""
    if signal == "traces":
        request, entry = ExportTraceServiceRequest(), None
        entry = request.resource_spans.add()
        scopes_of, records_of, copy = "scope_spans", "spans", _copy_span
    elif signal == "logs":
        request = ExportLogsServiceRequest()
        entry = request.resource_logs.add()
        scopes_of, records_of, copy = "scope_logs", "log_records", _copy_log
    else:
        return _metrics_request(batch)
    if batch.resource is not None:
        _copy_attributes(entry.resource.attributes, batch.resource.attributes)
    scopes, records = [], []
    for rotel_scope in getattr(batch, scopes_of):
        proto_scope = getattr(entry, scopes_of).add()
        _copy_scope(proto_scope.scope, rotel_scope.scope)
        scopes.append((rotel_scope, proto_scope))
        for record in getattr(rotel_scope, records_of):
            out = getattr(proto_scope, records_of).add()
            copy(out, record)
            records.append((record, out))
    return request, scopes, records


def _metrics_request(batch):
    """Metric data points (and their exemplars) are what can carry attributes; each is a "record"."""
    request = ExportMetricsServiceRequest()
    entry = request.resource_metrics.add()
    if batch.resource is not None:
        _copy_attributes(entry.resource.attributes, batch.resource.attributes)
    scopes, points = [], []
    for rotel_scope in batch.scope_metrics:
        proto_scope = entry.scope_metrics.add()
        _copy_scope(proto_scope.scope, rotel_scope.scope)
        scopes.append((rotel_scope, proto_scope))
        for metric in rotel_scope.metrics:
            out = proto_scope.metrics.add()
            out.name = metric.name or ""
            _copy_attributes(out.metadata, getattr(metric, "metadata", None))
            points.append((metric, out))
            holder = metric.data[0] if metric.data is not None else None
            kind = _POINT_KINDS.get(type(holder).__name__)
            if kind is None:
                continue
            for point in holder.data_points:
                proto_point = getattr(out, kind).data_points.add()
                _copy_attributes(proto_point.attributes, point.attributes)
                for exemplar in getattr(point, "exemplars", None) or ():
                    _copy_attributes(proto_point.exemplars.add().filtered_attributes, exemplar.filtered_attributes)
                points.append((point, proto_point))
    return request, scopes, points


# -- protobuf -> Rotel ---------------------------------------------------------------------------
def rotel_any(sdk, value):
    """A protobuf AnyValue as a Rotel AnyValue, arrays reversed (see the module docstring)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        array = sdk.ArrayValue()
        for item in reversed(value.array_value.values):
            array.append(rotel_any(sdk, item))
        return sdk.AnyValue(array)
    if kind == "kvlist_value":
        kvlist = sdk.KeyValueList()
        for kv in value.kvlist_value.values:
            kvlist.append(sdk.KeyValue(kv.key, rotel_any(sdk, kv.value)))
        return sdk.AnyValue(kvlist)
    return sdk.AnyValue(to_python(value) if kind else None)


def _rotel_attributes(sdk, repeated) -> list:
    return [sdk.KeyValue(kv.key, rotel_any(sdk, kv.value)) for kv in repeated]


def _set_attributes(sdk, owner, repeated, name: str = "attributes") -> None:
    """Rotel lets a span's or a resource's attribute list be replaced whole; those of scopes, events,
    links and data points only item by item (masking keeps their length)."""
    values = _rotel_attributes(sdk, repeated)
    try:
        setattr(owner, name, values)
        return
    except (AttributeError, TypeError):
        pass
    current = getattr(owner, name)
    for i, kv in enumerate(values):
        if i < len(current):
            current[i] = kv
        else:
            current.append(kv)


def write_back(sdk, signal: str, batch, request, scopes, records) -> None:
    """Every field the batch path may have changed, from ``request`` onto Rotel's objects."""
    entry = request.ListFields()[0][1][0]
    if batch.resource is not None:
        _set_attributes(sdk, batch.resource, entry.resource.attributes)
    for rotel_scope, proto_scope in scopes:
        if rotel_scope.scope is not None:
            _set_attributes(sdk, rotel_scope.scope, proto_scope.scope.attributes)
    for rotel_record, out in records:
        if signal == "metrics":
            _write_metric(sdk, rotel_record, out)
            continue
        _set_attributes(sdk, rotel_record, out.attributes)
        if signal == "traces":
            rotel_record.name = out.name
            rotel_record.trace_state = out.trace_state
            if rotel_record.status is not None:
                rotel_record.status.message = out.status.message
            for event, proto_event in zip(rotel_record.events, out.events):
                event.name = proto_event.name
                _set_attributes(sdk, event, proto_event.attributes)
            for link, proto_link in zip(rotel_record.links, out.links):
                link.trace_state = proto_link.trace_state
                _set_attributes(sdk, link, proto_link.attributes)
        elif signal == "logs":
            rotel_record.severity_text = out.severity_text
            if out.HasField("body"):
                rotel_record.body = rotel_any(sdk, out.body)
            if out.event_name:
                rotel_record.event_name = out.event_name


def _write_metric(sdk, rotel_object, out) -> None:
    if hasattr(out, "metadata"):  # a Metric
        if getattr(rotel_object, "metadata", None) is not None:
            _set_attributes(sdk, rotel_object, out.metadata, "metadata")
        return
    _set_attributes(sdk, rotel_object, out.attributes)  # a data point
    for exemplar, proto_exemplar in zip(getattr(rotel_object, "exemplars", None) or (), out.exemplars):
        _set_attributes(sdk, exemplar, proto_exemplar.filtered_attributes, "filtered_attributes")
