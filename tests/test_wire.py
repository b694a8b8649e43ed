"""The compiled wire-bytes attribute reader agrees with the protobuf-runtime reader it replaces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_processor.anyvalue import set_value
from otel_processor.outputs.enrich import LOG_ATTRIBUTES_FIELD, SPAN_ATTRIBUTES_FIELD
from otel_processor.pipeline.attributes import KEYS_FOR_DETECTION as _KEY_ACTION
from otel_processor.pipeline.attributes import KEYS_FOR_RESOLUTION as _KEY_ACTION_RESOLVE_ONLY
from otel_processor.pipeline.attributes import read_attributes
from otel_processor.pipeline.attributes import wire as _wire

pytestmark = pytest.mark.skipif(_wire is None, reason="compiled build not present (setup.py, Cython)")

KEYS = sorted(_KEY_ACTION)[:25] + ["nhi.trust.score", "nhi.identity.id", "http.request.header.x-api-key",
                                   "http.request.header.authorization", "other.key", "ü.key", "", "x" * 300]
scalars = (st.none() | st.text(max_size=40) | st.integers(-(2**63), 2**63 - 1) | st.booleans()
           | st.floats(allow_nan=False) | st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


def _record(message, attributes):
    for key, value in attributes:
        kv = message.attributes.add()
        kv.key = key
        set_value(kv.value, value)
    return message


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=30), st.booleans(), st.booleans())
def test_wire_reader_matches_protobuf_reader(attributes, as_log, resolve_only):
    table = _KEY_ACTION_RESOLVE_ONLY if resolve_only else _KEY_ACTION
    if as_log:
        record = _record(LogRecord(time_unix_nano=5, severity_text="INFO"), attributes)
        record.body.string_value = "user.id=mallory"  # a key's bytes inside another field
        field = LOG_ATTRIBUTES_FIELD
    else:
        record = _record(Span(name="GET /x", trace_id=b"\x01" * 16, kind=2), attributes)
        record.events.add(name="e").attributes.add(key="user.id").value.string_value = "not-mine"
        field = SPAN_ATTRIBUTES_FIELD
    expected = read_attributes(record.attributes, table)
    assert _wire.read_attributes_wire(record.SerializeToString(), field, _wire.KeyTable(table)) == expected


def test_truncated_bytes_are_an_error_not_a_crash():
    span = _record(Span(name="x"), [("user.id", "svc-a"), ("http.route", "/a")])
    data = span.SerializeToString()
    table = _wire.KeyTable(_KEY_ACTION)
    for cut in range(1, len(data)):
        try:
            _wire.read_attributes_wire(data[:cut], SPAN_ATTRIBUTES_FIELD, table)
        except ValueError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.lists(st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=4),
                                  max_size=3), max_size=3), min_size=1, max_size=3), st.booleans())
def test_request_reader_gives_every_record_in_order(resources, as_logs):
    """read_request over resources -> scopes -> records equals reading each record on its own."""
    request_type, resources_of, scopes_of, records_of, field = (
        (ExportLogsServiceRequest, "resource_logs", "scope_logs", "log_records", LOG_ATTRIBUTES_FIELD) if as_logs
        else (ExportTraceServiceRequest, "resource_spans", "scope_spans", "spans", SPAN_ATTRIBUTES_FIELD))
    request = request_type()
    for scopes in resources:
        resource = getattr(request, resources_of).add()
        resource.resource.attributes.add(key="user.id").value.string_value = "resource-level"
        for records in scopes:
            scope = getattr(resource, scopes_of).add()
            scope.scope.name = "s"
            for attributes in records:
                _record(getattr(scope, records_of).add(), attributes)
    flat = [record for resource in getattr(request, resources_of) for scope in getattr(resource, scopes_of)
            for record in getattr(scope, records_of)]
    got = _wire.read_request(request.SerializeToString(), field, _wire.KeyTable(_KEY_ACTION))
    assert got == [read_attributes(r.attributes, _KEY_ACTION) for r in flat]
