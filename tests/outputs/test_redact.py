"""Masking: secrets planted wherever telemetry can carry them never leave, and what is not a secret
is left alone. Runs on whichever hot path is installed (CI runs the suite compiled and as Python)."""

from __future__ import annotations

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from otel_processor.config import MaskingConfig, ProcessorConfig
from otel_processor.identity.credentials import fingerprint, masked
from otel_processor.outputs.redact import _RULES, FINGERPRINT, HIDE, SAFE, TRIGGER, classify_key, mask_text
from otel_processor.pipeline import BatchProcessor

from otlp_builders import any_value, attrs_of, logs, traces

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzdmMtZGVwbG95IiwiYXVkIjoiYXBpIn0.Zm9vYmFyYmF6cXV4"
GH = "ghp_" + "R2d2C3po4Tr9bB7xYz1QwErTyUiOp0AsDfGh"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def planted(n: int) -> str:
    """A distinct secret per location, so that a leak names its place."""
    return f"S3cr3t-{n:02d}-{'x' * 20}"


# (where, how to plant it, the secret) -- every place the adversarial review found, and more.
SPAN_CASES = [
    ("record header", lambda s, v: s.attributes.extend(_kv("http.request.header.authorization", f"Bearer {v}"))),
    ("capitalised header", lambda s, v: s.attributes.extend(_kv("Authorization", v))),
    ("cookie", lambda s, v: s.attributes.extend(_kv("http.request.header.cookie", f"session={v}"))),
    ("set-cookie", lambda s, v: s.attributes.extend(_kv("http.response.header.set-cookie", [f"sid={v}; Path=/"]))),
    ("proxy-authorization", lambda s, v: s.attributes.extend(_kv("http.request.header.proxy-authorization", v))),
    ("x-auth-token", lambda s, v: s.attributes.extend(_kv("http.request.header.x-auth-token", v))),
    ("x-amz-security-token", lambda s, v: s.attributes.extend(_kv("http.request.header.x-amz-security-token", v))),
    ("aws secret key", lambda s, v: s.attributes.extend(_kv("aws.secret_access_key", v))),
    ("nested array", lambda s, v: s.attributes.extend(_kv("http.request.header.x-api-key", [[v]]))),
    ("bytes value", lambda s, v: s.attributes.extend(_kv("http.request.header.x-api-key", v.encode()))),
    ("bytes value under an ordinary key", lambda s, v: s.attributes.extend(_kv("payload", f"password={v}".encode()))),
    ("map under a credential key", lambda s, v: s.attributes.extend(_kv("credentials", {"user": "u", "k": v}))),
    ("nested map key", lambda s, v: s.attributes.extend(_kv("app.config", {"db": {"password": v}}))),
    ("url.full query", lambda s, v: s.attributes.extend(_kv("url.full", f"https://api.example.com/v1?api_key={v}&a=1"))),
    ("url.query", lambda s, v: s.attributes.extend(_kv("url.query", f"page=2&access_token={v}"))),
    ("db.statement", lambda s, v: s.attributes.extend(_kv("db.statement", f"ALTER USER app PASSWORD '{v}'"))),
    ("connection string", lambda s, v: s.attributes.extend(_kv("db.connection_string", f"postgres://app:{v}@db:5432/x"))),
    ("process.command_line", lambda s, v: s.attributes.extend(_kv("process.command_line", f"mysql -u root --password {v}"))),
    ("span event header", lambda s, v: s.events.add(name="retry").attributes.extend(_kv("http.request.header.authorization", v))),
    ("exception.message", lambda s, v: s.events.add(name="exception").attributes.extend(
        _kv("exception.message", f"401 for token {JWT}{v[:2]}"))),
    ("span link", lambda s, v: s.links.add(trace_id=b"\x02" * 16).attributes.extend(_kv("http.request.header.x-api-key", v))),
    ("span name", lambda s, v: setattr(s, "name", f"GET /callback?code={v}")),
    ("status message", lambda s, v: setattr(s.status, "message", f"upstream said: Bearer {v}")),
    ("github token in text", lambda s, v: s.attributes.extend(_kv("message", f"cloned with {GH[:-2]}{v[:2]}"))),
    ("aws secret in text", lambda s, v: s.attributes.extend(_kv("env", f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}{v[:1]}"))),
]
SECRET_OF = {}


def _kv(key, value):
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    return [KeyValue(key=key, value=any_value(value))]


def _secret_for(i, where):
    if where == "exception.message":
        return JWT
    if where == "github token in text":
        return GH[:-2]
    if where == "aws secret in text":
        return AWS_SECRET
    return planted(i)


@pytest.mark.parametrize("i, where, plant", [(i, w, p) for i, (w, p) in enumerate(SPAN_CASES)],
                         ids=[w for w, _ in SPAN_CASES])
def test_no_planted_secret_leaves_a_span(i, where, plant):
    request = traces({"service.name": "checkout"}, {"kind": 3, "attrs": {"http.request.method": "GET",
                                                                       "url.path": "/orders/1"}})
    span = request.resource_spans[0].scope_spans[0].spans[0]
    secret = _secret_for(i, where)
    plant(span, planted(i))
    assert secret.encode() in request.SerializeToString()
    BatchProcessor().process_traces(request)
    out = request.SerializeToString()
    assert secret.encode() not in out, where
    got = attrs_of(span.attributes)
    assert got["http.request.method"] == "GET" and got["nhi.identity.id"]


@pytest.mark.parametrize("body", ["string", "map", "array", "bytes"])
def test_no_secret_leaves_a_log_body_resource_or_scope(body):
    secret = planted(90)
    value = {"string": f"login ok password={secret} user=ana", "map": {"event": "x", "password": secret},
             "array": ["a", f"Authorization: Bearer {secret}"],
             "bytes": f"login ok password={secret} user=ana".encode()}[body]
    request = logs({"service.name": "auth", "github.token": secret + "r"},
                   {"attrs": {"event.category": "authentication", "event.action": "signin", "user.id": "svc-a"}})
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    record.body.CopyFrom(any_value(value))
    request.resource_logs[0].scope_logs[0].scope.attributes.extend(_kv("x-api-key", secret + "s"))
    BatchProcessor().process_logs(request)
    out = request.SerializeToString()
    assert secret.encode() not in out
    assert b"login ok" in out or b"event" in out or b"Authorization" in out  # the rest stays


@pytest.mark.parametrize("kind", ["gauge", "sum", "histogram", "exponential_histogram", "summary", "exemplar"])
def test_no_secret_leaves_a_metric_data_point(kind):
    secret = planted(80)
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "http.server.request.duration"
    point = getattr(metric, "gauge" if kind == "exemplar" else kind).data_points.add()
    target = point.exemplars.add().filtered_attributes if kind == "exemplar" else point.attributes
    target.extend(_kv("http.request.header.authorization", f"Bearer {secret}"))
    point.attributes.extend(_kv("http.route", "/v1/orders"))
    BatchProcessor().process_metrics(request)
    out = request.SerializeToString()
    assert secret.encode() not in out and b"/v1/orders" in out


def test_fields_too_new_to_check_are_dropped_not_passed_on():
    from protowire import unknown_field, varint

    request = traces({"service.name": "a"}, {"kind": 3, "attrs": {"http.request.method": "GET"}})
    data = request.SerializeToString()
    import random

    extra = b"".join(unknown_field(n, 2, random.Random(n)) for n in (40, 41)) + varint(99 << 3 | 2) + \
        varint(len(planted(70))) + planted(70).encode()
    parsed = type(request).FromString(data + extra)
    BatchProcessor().process_traces(parsed, data + extra)
    assert planted(70).encode() not in parsed.SerializeToString()


def test_credential_identity_keeps_its_fingerprint_and_masking_is_idempotent():
    request = traces({"service.name": "gw"}, {"kind": 2, "attrs": {"http.request.header.x-api-key": "pk_live_1234567890"}})
    BatchProcessor().process_traces(request)
    got = attrs_of(request.resource_spans[0].scope_spans[0].spans[0].attributes)
    assert got["http.request.header.x-api-key"] == masked("pk_live_1234567890")
    assert got["nhi.identity.id"] == f"api_key:{fingerprint('pk_live_1234567890')}"
    again = type(request).FromString(request.SerializeToString())
    BatchProcessor().process_traces(again)
    assert attrs_of(again.resource_spans[0].scope_spans[0].spans[0].attributes)["http.request.header.x-api-key"] == \
        masked("pk_live_1234567890")


def test_site_specific_keys_and_patterns():
    config = ProcessorConfig(masking=MaskingConfig(extra_keys=["acme.*.pin"], extra_patterns=[r"ACME-[0-9]{6}"]))
    request = traces({"service.name": "a"}, {"kind": 3, "attrs": {"acme.card.pin": "1234", "note": "ref ACME-123456 ok"}})
    BatchProcessor(config).process_traces(request)
    got = attrs_of(request.resource_spans[0].scope_spans[0].spans[0].attributes)
    assert got["acme.card.pin"].startswith("sha256:") and got["note"] == "ref [masked] ok"


@pytest.mark.parametrize("text", [
    "GET /api/v1/orders/{id}", "secretsmanager.amazonaws.com", '{"secretId":"prod/db","versionStage":"AWSCURRENT"}',
    "token.issued", "https://api.example.com/v1/orders?page=2&per_page=100", "kubectl get secrets -A",
    "the password policy was updated", "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5",
])
def test_ordinary_telemetry_is_left_alone(text):
    assert mask_text(text) == text


@pytest.mark.parametrize("key, how", [
    ("http.request.header.authorization", FINGERPRINT), ("AUTHORIZATION", FINGERPRINT), ("Cookie", FINGERPRINT),
    ("github.token", FINGERPRINT), ("aws.secret_access_key", FINGERPRINT), ("SessionToken", FINGERPRINT),
    ("db.password", HIDE), ("clientSecret", HIDE), ("secretId", SAFE), ("token_id", SAFE), ("aws.access_key.id", SAFE),
    ("password_length", SAFE), ("event.action", SAFE), ("oauth.scopes", SAFE),
])
def test_key_classification(key, how):
    assert classify_key(key) == how


texts = st.lists(st.sampled_from(["eyJ", "eyJhbGciOiJI", ".", "ghp_", "a" * 20, "sk-", "password", "=", ":", " ",
                                  "Bearer", "://", "u", "@", "-----BEGIN RSA PRIVATE KEY-----", "x", "\n", "'", '"',
                                  "--password", "token", "sig", "code", "Code", "200", "0.AXoA1b2", "é", ",", "}",
                                  "\x0b", "\x0c"]) | st.text(max_size=4), max_size=14).map("".join)


@settings(max_examples=1500, deadline=None)
@given(texts)
def test_a_rule_only_finds_secrets_in_text_the_trigger_lets_through(text):
    """Masking checks strings the trigger (and its native twin) picked; no rule may match anything else."""
    if any(pattern.search(text) for pattern, _ in _RULES):
        assert TRIGGER.search(text), text


@settings(max_examples=300, deadline=None)
@given(texts)
def test_masking_is_idempotent_and_never_grows_a_secret(text):
    once = mask_text(text)
    assert mask_text(once) == once


class _Counting:
    """A compiled pattern that counts the characters it is asked to scan."""

    def __init__(self, pattern, tally: list):
        self.pattern, self.tally = pattern, tally

    def search(self, text, *args):
        self.tally[0] += len(text)
        return self.pattern.search(text, *args)

    def finditer(self, text, *args):
        self.tally[0] += len(text)
        return self.pattern.finditer(text, *args)


def test_a_megabyte_of_hostile_text_is_masked_in_one_pass_per_rule_on_re2(monkeypatch):
    """Work that does not depend on the machine: every pattern that reads a long text is RE2
    (linear in what it reads), and each reads the text at most once per rule, however many
    matches the text is built to give. Python's engine sees only strings of 16 characters or
    fewer. (``benchmarks/hostile.py`` reports what a megabyte costs in time.)"""
    from otel_processor.outputs import redact

    assert isinstance(redact._TRIGGER_LONG, re2._Regexp) and isinstance(redact._ANY_RULE, re2._Regexp)
    assert all(isinstance(p, re2._Regexp) for p, _ in redact._RULES)
    on_re2, on_python = [0], [0]
    monkeypatch.setattr(redact, "TRIGGER", _Counting(redact.TRIGGER, on_python))
    monkeypatch.setattr(redact, "_TRIGGER_LONG", _Counting(redact._TRIGGER_LONG, on_re2))
    monkeypatch.setattr(redact, "_ANY_RULE", _Counting(redact._ANY_RULE, on_re2))
    monkeypatch.setattr(redact, "_RULES", [(_Counting(p, on_re2), how) for p, how in redact._RULES])
    for text in ("eyJ" * 350_000, "password=" * 120_000, "://a:" * 200_000, "Bearer " * 150_000, "x" * 1_000_000,
                 "token=" + "a1" * 500_000, "Authorization: Bearer " * 45_000):
        on_re2[0] = on_python[0] = 0
        mask_text(text)
        assert on_python[0] == 0, text[:20]
        assert 0 < on_re2[0] <= (2 * len(redact._RULES) + 2) * len(text), (text[:20], on_re2[0] / len(text))


@settings(max_examples=1500, deadline=None)
@given(texts, st.binary(max_size=3), st.binary(max_size=3))
def test_the_request_level_trigger_picks_every_string_the_per_string_trigger_picks(text, before, after):
    """Pure Python mode decides from a request's bytes whether any string needs checking: whatever
    bytes stand around a string (lengths, tags, other strings), that decision may not miss one."""
    from otel_processor.outputs.redact import BYTES_TRIGGER

    if TRIGGER.search(text):
        assert BYTES_TRIGGER.search(before + text.encode() + after), text
    raw = before + text.encode() + after  # an AnyValue's bytes, not always UTF-8
    if TRIGGER.search(raw.decode("utf-8", "replace")):
        assert BYTES_TRIGGER.search(raw)


@pytest.mark.parametrize("text, secret", [
    (r'{"password": "p\u00e4ssw\u00f6rd99"}', r"p\u00e4ssw\u00f6rd99"),        # json.dumps' default, ASCII only
    (r'{"password": "\u00e4\u00e4\u00e4"}', r"\u00e4\u00e4\u00e4"),              # nothing but escapes
    (r'{"client_secret": "ab\u002Fcd\u003Def"}', r"ab\u002Fcd\u003Def"),          # escaped punctuation
    (r"token=abc\u0041\u0042\u0043def", r"\u0041\u0042\u0043def"),
])
def test_a_value_with_unicode_escapes_is_masked_whole(text, secret):
    """JSON written ASCII-only escapes every non-ASCII letter; a value used to end at its first
    escape, so `p\\u00e4ss...` left in clear (too short before it) and longer ones kept their tails."""
    out = mask_text(text)
    assert secret not in out and "[masked]" in out, out


@pytest.mark.parametrize("text, kept", [
    (r"password=abc\u0022 rest", r"\u0022 rest"),         # an escaped quote still ends the value
    (r"password=\u0027hunter2\u0027 x", r"\u0027 x"),
    (r'{\"password\":\"x1y2z3\"}', r'\"}'),
])
def test_an_escaped_quote_still_ends_a_value(text, kept):
    out = mask_text(text)
    assert out.endswith(kept) and "[masked]" in out, out
