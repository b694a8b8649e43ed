"""The secrets table (otel_processor/rules/secrets.yaml) holds: every token format's own example,
and every placement the masking promises, leave the processor masked, in both builds (the
compiled triggers are configured from the same table as the Python ones). Records are OTLP log
records as a Collector sends them: attributes, a text body, a vendor record as a map body."""

from __future__ import annotations

import pytest

from otel_processor.outputs.redact import TABLE
from otel_processor.pipeline import BatchProcessor
from otlp_builders import logs
from otel_processor.anyvalue import set_value

pytestmark = pytest.mark.both_builds

EXAMPLES = [(fmt["name"], fmt["example"]) for fmt in TABLE["token_formats"]]
# (placement, text holding the secret, the secret)
PLACEMENTS = [
    ("name, colon and a tab", "db_password:\thunter2-Xq9", "hunter2-Xq9"),
    ("name, colon and several spaces", "password:     hunter2-Xq9", "hunter2-Xq9"),
    ("name, spaces, equals, spaces", "client_secret =   s3cr3t-Value-77", "s3cr3t-Value-77"),
    ("Ruby hash rocket", '{"password" => "hunter2-Xq9"}', "hunter2-Xq9"),
    ("Python dict", "{'api_key': 'k-0a1b2c3d4e5f'}", "k-0a1b2c3d4e5f"),
    ("Authorization with the Okta scheme", "Authorization: SSWS 00aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z",
     "00aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z"),
    ("Authorization with AWS SigV4", "Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261207/us-east-1/"
     "s3/aws4_request, SignedHeaders=host, Signature=0a1b2c3d4e5f60718293a4b5c6d7e8f9", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
    ("Authorization with Bearer", "Authorization: Bearer aB3dE5fG7hJ9kL1mN3pQ5r", "aB3dE5fG7hJ9kL1mN3pQ5r"),
    ("command-line flag", "deploy --token aB3dE5fG7hJ9kL1m --env prod", "aB3dE5fG7hJ9kL1m"),
    ("command-line secret key", "vault login -secret-key=Zx8Yw7Vu6Ts5", "Zx8Yw7Vu6Ts5"),
    ("connection string", "postgres://app:Pa55-w0rd-x@db.internal:5432/app", "Pa55-w0rd-x"),
    ("SQL", "ALTER USER app WITH PASSWORD 'Pa55-w0rd-x'", "Pa55-w0rd-x"),
    ("JSON inside a JSON string", '{\\"db_password\\":\\"Pa55-w0rd-x\\",\\"user\\":\\"app\\"}', "Pa55-w0rd-x"),
    ("unicode-escaped quotes and sign", "\\u0022api_key\\u0022\\u003d\\u0022k-0a1b2c3d4e5f\\u0022", "k-0a1b2c3d4e5f"),
    ("URL-encoded in a logged URL", "GET /login?next=%2Fhome%3Fpassword%3DPa55-w0rd-x", "Pa55-w0rd-x"),
    ("AWS secret beside its key id", "AWS_KEYS=AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
]
# (key, value): attribute keys that hold a credential whatever the value looks like
KEYS = [
    ("http.request.header.x-api-token", "plain-looking-value-1"),
    ("http.request.header.ocp-apim-subscription-key", "plain-looking-value-2"),
    ("http.request.header.x-datadog-api-key", "plain-looking-value-3"),
    ("http.request.header.x-honeycomb-team", "plain-looking-value-4"),
    ("http.request.header.dd-api-key", "plain-looking-value-5"),
]


def _leaves(processor: BatchProcessor, request) -> bytes:
    processor.process_logs(request)
    return request.SerializeToString()


@pytest.mark.parametrize("name, example", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_token_format_of_the_table_is_masked_wherever_it_stands(name, example):
    secret = example.split("/services/")[-1].split("/webhooks/")[-1].split("/webhookb2/")[-1]
    request = logs({"service.name": "api"},
                   {"attrs": {"note": f"found {example} here"}, "body": f"token used: {example}"},
                   {"attrs": {"http.url": f"https://example.com/?x=1&ref={example}"}, "body": example})
    out = _leaves(BatchProcessor(), request)
    assert secret.encode() not in out and example.encode() not in out, name


@pytest.mark.parametrize("placement, text, secret", PLACEMENTS, ids=[p for p, _, _ in PLACEMENTS])
def test_every_placement_the_masking_promises_is_masked(placement, text, secret):
    request = logs({"service.name": "api"}, {"attrs": {"process.command_line": text}, "body": text})
    out = _leaves(BatchProcessor(), request)
    assert secret.encode() not in out, placement


@pytest.mark.parametrize("key, value", KEYS)
def test_api_key_headers_are_masked_by_their_name(key, value):
    out = _leaves(BatchProcessor(), logs({"service.name": "api"}, {"attrs": {key: value}}))
    assert value.encode() not in out, key


def test_a_kubernetes_secret_read_natively_leaves_its_data_masked():
    """A Kubernetes audit record at RequestResponse level carries the Secret it returned: its
    data keys (tls.key, ssh-privatekey, .dockerconfigjson) hold the secrets."""
    secret_data = {"tls.key": "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUFiYw==",
                   "ssh-privatekey": "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==",
                   ".dockerconfigjson": "eyJhdXRocyI6eyJyZWdpc3RyeS5leGFtcGxlIjp7ImF1dGgiOiJkWE5sY2pwd1lYTnoifX19"}
    record = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
              "auditID": "9c4b3a2e-0000-4000-8000-000000000001", "stage": "ResponseComplete",
              "requestURI": "/api/v1/namespaces/payments/secrets/registry", "verb": "get",
              "user": {"username": "system:serviceaccount:payments:api"}, "sourceIPs": ["10.0.3.4"],
              "objectRef": {"resource": "secrets", "namespace": "payments", "name": "registry", "apiVersion": "v1"},
              "responseStatus": {"code": 200},
              "responseObject": {"kind": "Secret", "apiVersion": "v1", "type": "kubernetes.io/tls",
                                 "metadata": {"name": "registry", "namespace": "payments"}, "data": secret_data},
              "requestReceivedTimestamp": "2026-12-07T10:00:00.000000Z",
              "stageTimestamp": "2026-12-07T10:00:00.010000Z"}
    request = logs({"k8s.cluster.name": "prod"}, {"attrs": {}})
    set_value(request.resource_logs[0].scope_logs[0].log_records[0].body, record)
    out = _leaves(BatchProcessor(), request)
    for value in secret_data.values():
        assert value.encode() not in out
