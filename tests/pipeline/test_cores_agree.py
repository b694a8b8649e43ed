"""The two paths behind the batch contract agree (issue 27): the spliced path (the native reader,
record views, ``nhi.*`` attributes written into the request's own bytes) and the protobuf path
(parse, mask, enrich, serialize), fed the same requests in the same order by two processors.

- both simulated weeks, every request: byte-identical forwarded requests and equal events;
- every vendor fixture (``otel_processor/inputs/testdata``) as ``convert`` writes it and as the
  filelog receiver leaves it (JSON text bodies): the same;
- Hypothesis-built requests with credentials, forged ``nhi.*`` attributes, vendor bodies, odd
  kinds and codes: the same;
- those requests with bytes flipped, cut or duplicated: both refuse, or both forward requests
  that parse to the same message with the same events (bytes too when the input is as a protobuf
  serializer writes it; the spliced path keeps a sender's field order where the other re-encodes).

Runs on the native build only (the protobuf path alone is the plain-Python build).
"""

from __future__ import annotations

import io

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

import worlds
from otel_processor.anyvalue import set_value, to_python
from otel_processor.config import ProcessorConfig
from otel_processor.engine.config import EngineConfig
from otel_processor.inputs.convert import convert
from otel_processor.otlp_json import parse_json
from otel_processor.pipeline import BatchProcessor
from otel_processor.pipeline.attributes import RequestReader, wire
from otel_processor.pipeline.core import MalformedRequest, ReferenceCore
from otel_processor.pipeline.views import Views
from otlp_builders import logs, traces
from paths import VENDOR_FIXTURES
from vendor_records import cloudtrail

pytestmark = pytest.mark.skipif(wire is None, reason="native core not built (setup.py, cargo)")


def _cores(detect: bool = True) -> tuple[ReferenceCore, ReferenceCore]:
    spliced = ReferenceCore(BatchProcessor(ProcessorConfig(engine=EngineConfig(enabled=detect))))
    parsed = ReferenceCore(BatchProcessor(ProcessorConfig(engine=EngineConfig(enabled=detect))))
    parsed.processor._views.available = False  # the protobuf path only
    assert spliced.processor.splices and not parsed.processor.splices
    return spliced, parsed


def _takes_splice(core: ReferenceCore, signal: str, data: bytes) -> bool:
    return isinstance(core.processor._views.read(signal, data), Views)


def _outcome(core: ReferenceCore, signal: str, data: bytes):
    try:
        processed = core.process(signal, data)
    except MalformedRequest:
        return None
    return processed


@pytest.mark.slow
@pytest.mark.parametrize("world", [worlds.week, worlds.vendor_week], ids=["contract shape", "vendor shape"])
def test_both_paths_forward_the_same_bytes_and_raise_the_same_events_over_a_simulated_week(world):
    spliced, parsed = _cores()
    took_splice = requests = 0
    for signal, request, _last in worlds.requests_of(world().records):
        data = request.SerializeToString()
        a, b = spliced.process(signal, data), parsed.process(signal, data)
        assert a.data == b.data
        assert a.result.events == b.result.events
        assert (a.result.records, a.result.attributed, a.result.failed) == (
            b.result.records, b.result.attributed, b.result.failed)
        requests += 1
        took_splice += _takes_splice(spliced, signal, data)
    assert took_splice >= requests * 0.9, "the spliced path was meant to take nearly every request"


def _vendor_requests(as_text: bool) -> list[bytes]:
    out = io.StringIO()
    convert([VENDOR_FIXTURES], out)
    requests = [parse_json(line, ExportLogsServiceRequest) for line in out.getvalue().splitlines()]
    if as_text:  # the records as the filelog receiver leaves them without a parser
        for request in requests:
            for rl in request.resource_logs:
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        record.body.string_value = orjson.dumps(to_python(record.body)).decode()
    return [request.SerializeToString() for request in requests]


@pytest.mark.parametrize("as_text", [False, True], ids=["converted", "JSON text bodies"])
def test_both_paths_agree_on_every_vendor_fixture(as_text):
    spliced, parsed = _cores()
    requests = _vendor_requests(as_text)
    for data in requests:
        a, b = spliced.process("logs", data), parsed.process("logs", data)
        assert a.data == b.data and a.result.events == b.result.events
        assert a.result.vendor == b.result.vendor and a.result.attributed == b.result.attributed
    assert requests and all(_takes_splice(spliced, "logs", d) for d in requests)


SECRETISH = ["Bearer eyJhbGciOi.eyJzdWIiOi.c2ln", "ghp_" + "a" * 36, "password=hunter2", "https://u:p@h/x",
             "svc-payments", "arn:aws:iam::123456789012:role/deploy", "10.1.2.3", "198.51.100.7", ""]
KEYS = ["user.id", "service.name", "event.action", "source.address", "http.request.header.authorization",
        "nhi.identity.id", "nhi.trust.score", "password", "db.statement", "k8s.pod.name", "cicd.pipeline.name",
        "aws.principal.arn", "rpc.method", "enduser.id", "note"]
scalars = st.sampled_from(SECRETISH) | st.text(max_size=12) | st.integers(-(2**63), 2**63 - 1) | st.booleans()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3), max_leaves=5)
attributes = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), values, max_size=6)
span = st.fixed_dictionaries({"attrs": attributes, "kind": st.integers(0, 6), "status": st.integers(0, 3),
                              "name": st.sampled_from(["GET /x", "", "secrets.get", "password=x"]),
                              "start": st.integers(0, 2**64 - 1_000_001)})
log_record = st.fixed_dictionaries({"attrs": attributes, "time": st.integers(0, 2**64 - 1),
                                    "event_name": st.sampled_from(["", "k8s.audit", "token=abc"]),
                                    "body": st.sampled_from(["", "plain", "{\"eventSource\": \"s3\"}", "{ "])})


@st.composite
def requests(draw):
    resource = draw(attributes)
    if draw(st.booleans()):
        return "traces", traces(resource, *draw(st.lists(span, max_size=4)))
    request = logs(resource, *draw(st.lists(log_record, max_size=4)))
    if draw(st.booleans()):  # a vendor record as the body (a map), as the Collector's receivers leave it
        record = request.resource_logs[0].scope_logs[0].log_records.add()
        set_value(record.body, cloudtrail(draw(st.integers(1_600_000_000 * 10**9, 1_800_000_000 * 10**9)),
                                          draw(st.sampled_from(["deploy", "ci-runner"])),
                                          draw(st.sampled_from(["prod/db", "password=x"])),
                                          draw(st.sampled_from(["10.20.3.7", "45.76.13.9"]))))
    return "logs", request


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.booleans())
def test_both_paths_agree_on_hostile_requests(req, detect):
    signal, request = req
    spliced, parsed = _cores(detect)
    data = request.SerializeToString()
    a, b = spliced.process(signal, data), parsed.process(signal, data)
    assert a.data == b.data and a.result.events == b.result.events


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.lists(st.tuples(st.sampled_from(["flip", "cut", "double"]), st.integers(0, 10**6),
                                      st.integers(0, 255)), min_size=1, max_size=3))
def test_both_paths_refuse_or_forward_the_same_message_for_damaged_bytes(req, damage):
    signal, request = req
    data = bytearray(request.SerializeToString())
    for how, where, byte in damage:
        if not data:
            break
        i = where % len(data)
        if how == "flip":
            data[i] = byte
        elif how == "cut":
            del data[i:]
        else:
            data[i:i] = data[i:i + 1 + byte % 16]  # bytes repeated: fields given twice
    data = bytes(data)
    spliced, parsed = _cores()
    a, b = _outcome(spliced, signal, data), _outcome(parsed, signal, data)
    assert (a is None) == (b is None), "one path refused what the other forwarded"
    if a is None:
        return
    assert a.result.events == b.result.events
    parse = parsed.parse
    assert parse(signal, a.data) == parse(signal, b.data)
    if parse(signal, data).SerializeToString() == data:  # as a protobuf serializer writes it
        assert a.data == b.data


def test_secrets_outside_attributes_leave_masked_on_the_spliced_path():
    """A token in a span event, a link, a status message, a nested map body and a JSON text body:
    the record is parsed alone and masked whole; nothing of the token leaves, and the bytes are
    the protobuf path's."""
    secret = "ghp_" + "A1b2" * 9
    spans = traces({"service.name": "svc-a"}, {"name": "GET /x"}, {"name": "GET /y"}, {"name": "GET /z"})
    span_list = spans.resource_spans[0].scope_spans[0].spans
    event = span_list[0].events.add(name="exception")
    event.attributes.add(key="exception.message").value.string_value = f"failed with token {secret}"
    span_list[1].links.add().attributes.add(key="note").value.string_value = f"Authorization: Bearer {secret}"
    span_list[2].status.message = f"password={secret}"
    records = logs({"service.name": "svc-a"}, {"body": f'{{"password": "{secret}"}}'}, {"attrs": {"note": "x"}})
    set_value(records.resource_logs[0].scope_logs[0].log_records[1].body, {"msg": "x", "nested": [{"token": secret}]})
    for signal, request in (("traces", spans), ("logs", records)):
        spliced, parsed = _cores()
        data = request.SerializeToString()
        assert _takes_splice(spliced, signal, data)
        a, b = spliced.process(signal, data), parsed.process(signal, data)
        assert secret.encode() not in a.data and "A1b2A1b2" not in a.data.decode("utf-8", "replace")
        assert a.data == b.data


def test_a_request_the_spliced_path_declines_is_masked_from_the_same_reading(monkeypatch):
    """A credential in the resource sends the request to the protobuf path, which masks it from
    what the reader already found instead of reading the bytes again."""
    request = logs({"service.name": "svc-a", "db.password": "hunter2-Xq9"}, {"attrs": {"user.id": "svc-a"}})
    data = request.SerializeToString()
    spliced, parsed = _cores()
    assert not _takes_splice(spliced, "logs", data)
    reads = []
    monkeypatch.setattr(RequestReader, "scan", lambda self, *args: reads.append(args))
    a = spliced.process("logs", data)
    assert reads == [] and b"hunter2-Xq9" not in a.data
    monkeypatch.undo()
    assert a.data == parsed.process("logs", data).data
