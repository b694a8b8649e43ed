"""The native wire reader agrees with the protobuf runtime it replaces: the same attributes, the
same decision on what needs masking, every wire type (groups and unknown fields anywhere)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_processor.anyvalue import set_value
from otel_processor.outputs.redact import TRIGGER, Redactor
from otel_processor.pipeline.attributes import DIRTY, UNKNOWN, wire_schema
from otel_processor.pipeline.attributes import KEYS_FOR_DETECTION as _KEY_ACTION
from otel_processor.pipeline.attributes import KEYS_FOR_RESOLUTION as _KEY_ACTION_RESOLVE_ONLY
from otel_processor.pipeline.attributes import read_attributes
from otel_processor.pipeline.attributes import wire as _wire

from protowire import with_unknown_fields

pytestmark = pytest.mark.skipif(_wire is None, reason="native core not built (setup.py, cargo)")

KEYS = sorted(_KEY_ACTION)[:25] + ["nhi.trust.score", "nhi.identity.id", "http.request.header.x-api-key",
                                   "http.request.header.authorization", "other.key", "ü.key", "", "x" * 300,
                                   "Cookie", "db.password", "secretId"]
SECRETISH = ["Bearer eyJhbGciOi.eyJzdWIiOi.c2ln", "ghp_" + "a" * 36, "password=hunter2", "https://u:p@h/x",
             "plain text", "token.issued", "secretsmanager.amazonaws.com", "x=1&api_key=abc"]
scalars = (st.none() | st.text(max_size=40) | st.sampled_from(SECRETISH) | st.integers(-(2**63), 2**63 - 1)
           | st.booleans() | st.floats(allow_nan=False) | st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["a", "token", "password", "b", "ü", "eventSource"])
                                        | st.text(max_size=4), inner, max_size=3),
                      max_leaves=6)
SCHEMAS = {"traces": _wire.Schema(**wire_schema(ExportTraceServiceRequest)) if _wire else None,
           "logs": _wire.Schema(**wire_schema(ExportLogsServiceRequest)) if _wire else None,
           "metrics": _wire.Schema(**wire_schema(ExportMetricsServiceRequest)) if _wire else None}


def _record(message, attributes):
    for key, value in attributes:
        kv = message.attributes.add()
        kv.key = key
        set_value(kv.value, value)
    return message


def _keys():
    return _wire.KeyClassifier(Redactor().key_action)


def _needs_masking(record) -> bool:
    """Whether the reference redactor changes this record (on a copy)."""
    copy = type(record).FromString(record.SerializeToString())
    Redactor().message(copy)
    return copy.SerializeToString() != record.SerializeToString()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=30), st.booleans(), st.booleans(),
       st.sampled_from(SECRETISH))
def test_wire_reader_matches_protobuf_reader_and_flags_what_needs_masking(attributes, as_log, resolve_only, text):
    table = _KEY_ACTION_RESOLVE_ONLY if resolve_only else _KEY_ACTION
    if as_log:
        record = _record(LogRecord(time_unix_nano=5, severity_text="INFO"), attributes)
        record.body.string_value = f"user.id=mallory {text}"  # a key's bytes inside another field
        schema = SCHEMAS["logs"]
    else:
        record = _record(Span(name="GET /x", trace_id=b"\x01" * 16, kind=2), attributes)
        record.events.add(name="e").attributes.add(key="user.id").value.string_value = text
        schema = SCHEMAS["traces"]
    got, special, flags, dirty, _ = _wire.read_record(record.SerializeToString(), schema, _wire.KeyTable(table), _keys())
    assert (got, special) == read_attributes(record.attributes, table)
    if _needs_masking(record):
        assert flags & DIRTY or special
    assert not flags & UNKNOWN


def test_truncated_bytes_are_an_error_not_a_crash():
    span = _record(Span(name="x"), [("user.id", "svc-a"), ("http.route", "/a")])
    data = span.SerializeToString()
    table, keys = _wire.KeyTable(_KEY_ACTION), _keys()
    for cut in range(1, len(data)):
        try:
            _wire.read_record(data[:cut], SCHEMAS["traces"], table, keys)
        except ValueError:
            pass


def _request(resources, as_logs):
    request_type, resources_of, scopes_of, records_of = (
        (ExportLogsServiceRequest, "resource_logs", "scope_logs", "log_records") if as_logs
        else (ExportTraceServiceRequest, "resource_spans", "scope_spans", "spans"))
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
    return request, flat


requests = st.lists(st.lists(st.lists(st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=4),
                                      max_size=3), max_size=3), min_size=1, max_size=3)


@settings(max_examples=100, deadline=None)
@given(requests, st.booleans())
def test_request_reader_gives_every_record_in_order(resources, as_logs):
    """read_request over resources -> scopes -> records equals reading each record on its own."""
    request, flat = _request(resources, as_logs)
    reads, _dirty, unknown = _wire.read_request(request.SerializeToString(), SCHEMAS["logs" if as_logs else "traces"],
                                                _wire.KeyTable(_KEY_ACTION), _keys())
    assert [r[:2] for r in reads] == [read_attributes(r.attributes, _KEY_ACTION) for r in flat]
    assert not unknown


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests, st.booleans(), st.integers(0, 2**32), st.sampled_from([0, 1, 2, 3, 5]))
def test_unknown_fields_of_every_wire_type_anywhere_are_read_past_and_reported(resources, as_logs, seed, wire_type):
    request, flat = _request(resources, as_logs)
    data = with_unknown_fields(request.SerializeToString(), type(request).DESCRIPTOR, random.Random(seed), wire_type)
    parsed = type(request).FromString(data)  # protobuf keeps them as unknown fields
    records = ([r for entry in parsed.resource_logs for scope in entry.scope_logs for r in scope.log_records]
               if as_logs else [s for entry in parsed.resource_spans for scope in entry.scope_spans for s in scope.spans])
    reads, _dirty, unknown = _wire.read_request(data, SCHEMAS["logs" if as_logs else "traces"],
                                                _wire.KeyTable(_KEY_ACTION), _keys())
    assert [r[:2] for r in reads] == [read_attributes(r.attributes, _KEY_ACTION) for r in records]
    assert unknown == (data != request.SerializeToString())
    parsed.DiscardUnknownFields()
    assert parsed.SerializeToString() == request.SerializeToString()


def test_an_empty_group_appended_to_a_request_is_read_not_refused():
    """Two extra bytes (start and end of group 2 at the request's top level) used to make the
    reader give up on the whole batch, which then left unmasked."""
    request, _ = _request([[[[("http.request.header.authorization", "Bearer s3cr3t-t0ken")]]]], as_logs=False)
    data = request.SerializeToString() + b"\x13\x14"
    parsed = ExportTraceServiceRequest.FromString(data)  # valid protobuf: an unknown (group) field
    parsed.DiscardUnknownFields()
    assert parsed == request
    reads, _dirty, unknown = _wire.read_request(data, SCHEMAS["traces"], _wire.KeyTable(_KEY_ACTION), _keys())
    assert unknown and reads[0][1] and reads[0][2] & DIRTY and reads[0][3] == [0]


# -- the native triggers are outputs.redact.TRIGGER ---------------------------------------------
FRAGMENTS = ["eyJ", "ghp_", "github_pat_", "glpat-", "xoxb-", "sk_live_", "rk_test_", "AIza", "npm_", "sk-", "SG.",
             "-----BEGIN", "://", "u:p@", "@", "/", "\n", "password", "PassWord", "secret", "token", "TOKEN", "apikey", "key", "sig",
             "authorization", "auth", "code", "session", "cookie", "bearer", "Basic", "--password", "-secret", "-api-key", "-client_secret", "identified by", "IDENTIFIED", " by", "=", ":", " ", "  ", "\t", "\t\t", "=>", "%3D", "%3a", "%", "%3",
             "AKIAIOSFODNN7EXAMPLE", "ASIA", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "+", "\\", '\\"',
             "\\'", "\\u0022", "\\u0027", "\\u003d", "\\u003A", "\\u00", '"',
             "'", "a", "_", "-", "x", "é", "ü", "\u212a", "0", "/", "@", "?", "&", "200", "0.AXoA1b2", "abcd1234",
             ",", "}", "]", "\x0b", "\x0c", "\r", "😀"]
# Every word and prefix of the secrets table, in the case written and in upper case: the C tables
# are configured from it, so whatever is added there is tried here.
from otel_processor.outputs.redact import trigger_words  # noqa: E402

FRAGMENTS += sorted({w for group in trigger_words() for word in group for w in (word, word.upper(), word[:-1])})
texts = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=12).map("".join)


@settings(max_examples=2000, deadline=None)
@given(texts)
def test_native_triggers_and_python_triggers_agree(text):
    assert _wire.suspicious(text) == bool(TRIGGER.search(text)), text


@settings(max_examples=300, deadline=None)
@given(value=values, seed=st.integers(0, 2**32), unknown=st.sampled_from([None, 0, 1, 2, 3, 5]))
def test_any_value_decoder_matches_to_python(value, seed, unknown):
    """The C decoder of vendor bodies gives exactly what ``anyvalue.to_python`` gives, unknown
    fields and all; cut bytes are an error, not a crash."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    from otel_processor.anyvalue import to_python

    any_value = AnyValue()
    set_value(any_value, value)
    data = any_value.SerializeToString()
    if unknown is not None:
        data = with_unknown_fields(data, AnyValue.DESCRIPTOR, random.Random(seed), unknown)
    parsed = AnyValue.FromString(data)
    assert _wire.any_value(data) == to_python(parsed)
    if len(data) > 1:
        cut = data[: random.Random(seed).randrange(1, len(data))]
        try:
            AnyValue.FromString(cut)
        except Exception:  # noqa: BLE001 - protobuf refuses it: so must we, with an error
            with pytest.raises(ValueError):
                _wire.any_value(cut)


def _length_prefixed(field: int, payload: bytes) -> bytes:
    n, head = len(payload), bytes([field << 3 | 2])
    while n > 0x7F:
        head += bytes([n & 0x7F | 0x80])
        n >>= 7
    return head + bytes([n]) + payload


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(values, min_size=1, max_size=3), bodies=st.integers(1, 2))
def test_a_map_body_read_off_the_request_bytes_is_what_protobuf_reads(parts, bodies):
    """A vendor record in a log body is read straight from the request's bytes (not serialized
    again). Bytes can say one value several times, which protobuf merges (two maps in one
    AnyValue are one map; two body fields are one body): the reader then declines, and never
    reads something other than what protobuf, and everything downstream, reads."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    from otel_processor.anyvalue import to_python

    encoded = []
    for value in parts:
        any_value = AnyValue()
        set_value(any_value, value)
        encoded.append(any_value.SerializeToString())
    body = b"".join(encoded)  # concatenated messages: protobuf merges them
    head = LogRecord(time_unix_nano=5).SerializeToString()
    data = head + b"".join(_length_prefixed(5, body) for _ in range(bodies))
    parsed = LogRecord.FromString(data)
    *_, body_at = _wire.read_record(data, SCHEMAS["logs"], _wire.KeyTable(_KEY_ACTION), _keys())
    expected = to_python(parsed.body)
    if body_at < 0:  # only a single map body is read from the bytes
        assert bodies > 1 or parsed.body.WhichOneof("value") != "kvlist_value"
        return
    assert bodies == 1 and data[body_at - 1] == 5 << 3 | 2
    try:
        got = _wire.body_value(data, body_at, 1 << 20)
    except _wire.ReadAsPython:
        assert len(parts) > 1  # only merged encodings are declined
        return
    assert got == expected
    assert _wire.body_value(data, body_at, 0) is None or not body


def test_a_classifier_that_raises_fails_the_read_with_its_own_error():
    """Keys are classified by a Python callable between walks with the interpreter released; its
    exception reaches the caller as it was raised, and a later read asks it again."""
    calls = []

    def classify(key):
        calls.append(key)
        raise LookupError(f"no rule for {key}")

    data = _record(Span(), [("service.name", "x")]).SerializeToString()
    keys = _wire.KeyClassifier(classify)
    for _ in range(2):
        with pytest.raises(LookupError, match="no rule for service.name"):
            _wire.read_record(data, SCHEMAS["traces"], _wire.KeyTable(_KEY_ACTION), keys)
    assert calls == ["service.name", "service.name"]


def test_reads_from_several_threads_at_once_agree_with_one_thread():
    """The walk runs with the interpreter released and the classifier's answers shared."""
    from concurrent.futures import ThreadPoolExecutor

    rnd = random.Random(5)
    requests = []
    for i in range(40):
        request = ExportTraceServiceRequest()
        spans = request.resource_spans.add().scope_spans.add().spans
        for j in range(50):
            _record(spans.add(), [(f"k{rnd.randrange(400)}", "v"), ("password" if j % 7 == 0 else "note", f"x{i}")])
        requests.append(request.SerializeToString())
    table = _wire.KeyTable(_KEY_ACTION)
    alone = [_wire.read_request(d, SCHEMAS["traces"], table, _keys()) for d in requests]
    shared = _keys()
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda d: _wire.read_request(d, SCHEMAS["traces"], table, shared), requests))
    assert together == alone


def test_a_key_too_long_to_remember_is_still_classified_with_a_bounded_number_of_asks():
    calls = []

    def classify(key):
        calls.append(len(key))
        return key.endswith("secret")

    long_key = "x" * 600 + "secret"  # past what the classifier's cache keeps (512 bytes)
    data = _record(Span(), [(long_key, "hunter2"), ("service.name", "x")]).SerializeToString()
    _, _, flags, dirty, _ = _wire.read_record(data, SCHEMAS["traces"], _wire.KeyTable(_KEY_ACTION),
                                              _wire.KeyClassifier(classify))
    assert flags & DIRTY and dirty == [0]
    assert calls.count(len(long_key)) <= 3 and calls.count(len("service.name")) == 1
