"""Vendor audit logs in: every fixture of ``otel_processor/inputs/testdata`` converted, replayed and
attributed as ``expected.yaml`` says; the same records read natively as log bodies (a map, or a
JSON string) give the same attribution; records are forwarded unchanged; the converter's
envelopes, errors and exit codes; credential facts; a hypothesis test with generated records."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
from collections import Counter

import grpc
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_processor.anyvalue import set_value, to_python
from otel_processor.config import ProcessorConfig, ServiceConfig
from otel_processor.hosts.serve.service import Service
from otel_processor.inputs.convert import convert, main as convert_main
from otel_processor.inputs.dispatch import PROFILES, profile_of, read_vendor
from otel_processor.inputs.files import walk
from otel_processor.inputs.record import Mapped, Skipped, Unusable, time_ns
from otel_processor.otlp_json import parse_json
from otel_processor.pipeline import BatchProcessor

from otlp_builders import attrs_of

from paths import VENDOR_FIXTURES as TESTDATA
with open(os.path.join(TESTDATA, "expected.yaml"), encoding="utf-8") as _f:
    EXPECTED: dict = yaml.safe_load(_f)
FIXTURES = sorted(EXPECTED)


def _converted(paths) -> tuple[list[ExportLogsServiceRequest], object]:
    out = io.StringIO()
    report = convert(paths, out)
    return [parse_json(line, ExportLogsServiceRequest) for line in out.getvalue().splitlines()], report


def _records(requests):
    for request in requests:
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                yield from sl.log_records


def _identities(requests) -> tuple[Counter, int]:
    found, unattributed = Counter(), 0
    for record in _records(requests):
        identity = attrs_of(record.attributes).get("nhi.identity.id")
        if identity is None:
            unattributed += 1
        else:
            found[identity] += 1
    return found, unattributed


def test_every_fixture_is_listed_and_every_listed_fixture_exists():
    on_disk = {os.path.relpath(p, TESTDATA).replace(os.sep, "/") for p in walk([TESTDATA])}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_converts_and_attributes_to_the_contract_identity(name):
    requests, report = _converted([os.path.join(TESTDATA, name)])
    assert report.error_count == 0, report.errors
    assert report.unrecognised == 0
    read = sum(c.read for c in report.sources.values())
    assert report.written == read > 0
    processor = BatchProcessor()
    for request in requests:
        processor.process_logs(request)
    found, unattributed = _identities(requests)
    assert dict(found) == EXPECTED[name]["identities"]
    assert unattributed == EXPECTED[name].get("unattributed", 0)
    owners = {attrs_of(r.attributes)["nhi.identity.id"]: attrs_of(r.attributes)["nhi.identity.owner"]
              for r in _records(requests) if "nhi.identity.owner" in attrs_of(r.attributes)}
    assert owners == EXPECTED[name].get("owners", {})


def _as_json_string_bodies(request: ExportLogsServiceRequest) -> ExportLogsServiceRequest:
    """The same records as the filelog receiver leaves them without a parser: the JSON text."""
    copy = ExportLogsServiceRequest()
    copy.CopyFrom(request)
    for record in _records([copy]):
        record.body.string_value = orjson.dumps(to_python(record.body)).decode()
    return copy


def test_native_bodies_map_or_json_text_are_read_as_the_converted_form():
    requests, _ = _converted([TESTDATA])
    as_text = [_as_json_string_bodies(r) for r in requests]
    before = [to_python(r.body) for r in _records(requests)]
    for batch in (requests, as_text):
        processor = BatchProcessor()
        for request in batch:
            processor.process_logs(request)
    ours = [{k: v for k, v in attrs_of(r.attributes).items() if k != "nhi.trust.score"} for r in _records(requests)]
    theirs = [{k: v for k, v in attrs_of(r.attributes).items() if k != "nhi.trust.score"} for r in _records(as_text)]
    assert ours == theirs
    assert sum(1 for a in ours if "nhi.identity.id" in a) == sum(
        sum(e["identities"].values()) for e in EXPECTED.values())
    # forwarded unchanged apart from nhi.* (and credentials masked: the STS session token; what an
    # Azure Activity record holds under "authorization", its RBAC evidence, is fingerprinted as
    # everything under that key is)
    after = [to_python(r.body) for r in _records(requests)]
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    azure = [(b, a) for b, a in changed if "identity" in b and "authorization" in b["identity"]]
    assert len(azure) == 1 and {k: v for k, v in azure[0][1]["identity"].items() if k != "authorization"} == {
        k: v for k, v in azure[0][0]["identity"].items() if k != "authorization"}
    changed = [c for c in changed if c not in azure]
    assert len(changed) == 1
    credentials_before = changed[0][0]["responseElements"]["credentials"]
    credentials_after = changed[0][1]["responseElements"]["credentials"]
    assert credentials_after["sessionToken"].startswith("sha256:")
    assert credentials_after["accessKeyId"] == credentials_before["accessKeyId"]
    assert {k: v for k, v in changed[0][1].items() if k != "responseElements"} == {
        k: v for k, v in changed[0][0].items() if k != "responseElements"}
    for record in _records(requests):
        assert all(k.startswith("nhi.") for k in attrs_of(record.attributes))


def test_contract_actions_targets_and_credentials():
    found = {}
    for path in walk([TESTDATA]):
        for request in _converted([path])[0]:
            for record in _records([request]):
                data = to_python(record.body)
                result = read_vendor(data)
                assert result is not None
                if isinstance(result, Mapped):
                    found.setdefault(result.attrs.get("event.action"), []).append(result)
    consent = found["oauth.consent.granted"]
    assert {m.attrs["oauth.client.id"] for m in consent} >= {"3f8a9b7c-0000-4000-8000-00000000a001"}
    assert any("Mail.Read" in (m.attrs.get("oauth.scopes") or "") for m in consent)
    created = found["credential.created"]
    assert {m.attrs["nhi.credential.created"] for m in created} == {
        "e5f6a7b8-0000-4000-8000-00000000c002", "0f1e2d3c-0000-4000-8000-00000000c007"}
    assert {m.attrs["nhi.target.identity"] for m in created} == {"oauth_app:3f8a9b7c-0000-4000-8000-00000000a001"}
    assert found["role.assigned"][0].attrs["oauth.scopes"] == "Mail.ReadWrite"
    forwarding = found["mailbox.forwarding_rule.created"]
    assert {m.attrs["email.to.address"] for m in forwarding} == {"collector@mailbox-relay.example",
                                                                "archive@offsite-mail.example"}
    reads = found["mailbox.items.read"]
    assert max(m.attrs.get("messaging.batch.message_count", 1) for m in reads) == 240
    graph = [m for m in reads if m.source == "graph_activity"]
    assert {(m.attrs["oauth.client.id"] if m.identity else m.attrs["user.id"], m.attrs["cloud.resource_id"])
            for m in graph} == {("3f8a9b7c-0000-4000-8000-00000000a001", "pat.finance@contoso.example"),
                                ("2b3c4d5e-0000-4000-8000-00000000c002", "2b3c4d5e-0000-4000-8000-00000000c002")}
    arm = {m.attrs["event.action"]: m for ms in found.values() for m in ms if m.source == "azure_activity"}
    assert arm["microsoft.authorization/roleassignments/write"].attrs["event.category"] == "iam"
    assert arm["microsoft.keyvault/vaults/write"].attrs["http.response.status_code"] == 403
    vault = [m for ms in found.values() for m in ms if m.source == "azure_keyvault"]
    assert "https://kv-prod.vault.azure.net/secrets/db-password" in {m.attrs["cloud.resource_id"] for m in vault}
    token = found["token.issued"]
    assert {m.attrs.get("nhi.credential.id") for m in token} >= {"d4c3b2a1-0000-4000-8000-00000000c001"}
    assert found["create serviceaccounts/token"] if "create serviceaccounts/token" in found else True
    k8s = [m for ms in found.values() for m in ms if m.source == "kubernetes" and "nhi.credential.id" in m.attrs]
    assert {m.attrs["nhi.credential.id"] for m in k8s} >= {"JTI=2c3d4e5f-0000-4000-8000-000000000902"}
    denied = [m for ms in found.values() for m in ms if m.attrs.get("http.response.status_code") == 403]
    assert denied and denied[0].attrs["event.outcome"] == "failure"
    gcp = [m for ms in found.values() for m in ms if m.source == "gcp_audit" and m.related]
    assert gcp[0].related == ("ci-runner@contoso-build.iam.gserviceaccount.com",)
    key = [m for ms in found.values() for m in ms if m.issued is not None and m.source == "gcp_audit"]
    assert key[0].issued.credential_id.endswith("/keys/9f8e7d6c5b4a39281706f5e4d3c2b1a098765432")
    bracketed = [m for ms in found.values() for m in ms if m.attrs.get("rpc.method") == "GetObject"]
    assert bracketed[0].attrs["user_agent.original"].startswith("aws-cli/1.18.136")


@pytest.mark.look_alike_of("test_the_issued_session_used_from_a_laptop_outside_aws_is_an_event")
def test_issuance_by_a_service_becomes_a_credential_fact():
    requests, _ = _converted([os.path.join(TESTDATA, "cloudtrail")])
    processor = BatchProcessor()
    for request in requests:
        processor.process_logs(request)
    facts = processor.engine.credential("ASIAEXAMPLEKEY000001")
    assert facts is not None
    assert facts.issued_by == "ec2.amazonaws.com"
    assert facts.issued_to.endswith("assumed-role/app-instance-role/i-0a1b2c3d4e5f60718")
    assert facts.networks == ("52.95.110.0/24", "10.0.12.0/24") and facts.uses == 2
    assert facts.clients == ("aws-cli",)  # [aws-cli/...] through the VPC endpoint is the same client
    # the session's calls through a NAT gateway and a VPC endpoint by one SDK: no event
    assert not [r for r in _records(requests) if "nhi.anomaly" in attrs_of(r.attributes)]


def test_the_issued_session_used_from_a_laptop_outside_aws_is_an_event():
    """The twin of the test above: the same fixture, the session's last call made from a VPS
    address by the CLI on a Mac, as a stolen instance credential is."""
    from otel_processor.anyvalue import set_value

    requests, _ = _converted([os.path.join(TESTDATA, "cloudtrail")])
    used = [r for r in _records(requests)
            if (to_python(r.body).get("userIdentity") or {}).get("accessKeyId") == "ASIAEXAMPLEKEY000001"]
    assert used
    body = to_python(used[-1].body)
    body.update(sourceIPAddress="45.137.21.88", userAgent="aws-cli/2.15.0 Python/3.11.6 Darwin/23.1.0 exe/x86_64")
    set_value(used[-1].body, body)
    processor, events = BatchProcessor(), []
    for request in requests:
        events += processor.process_logs(request).events
    flagged = [r for r in _records(requests) if "nhi.anomaly" in attrs_of(r.attributes)]
    assert [attrs_of(r.attributes)["nhi.credential.id"] for r in flagged] == ["ASIAEXAMPLEKEY000001"]
    assert [e.identity.principal for e in events] == ["arn:aws:iam::111122223333:role/app-instance-role"]


def test_replay_through_serve_over_grpc_attributes_every_fixture(sink):
    requests, _ = _converted([TESTDATA])
    service = Service(ProcessorConfig(service=ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin="127.0.0.1:0", listen_http="127.0.0.1:0",
                                                            forward=sink.endpoint), state_dir=None))
    with service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}")
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        for request in requests:
            stub.Export(request, timeout=10)
        channel.close()
    kinds = Counter(attrs_of(r.attributes).get("nhi.identity.kind") for r in sink.telemetry_log_records())
    expected = Counter()
    for entry in EXPECTED.values():
        for identity, n in entry["identities"].items():
            expected[identity.split(":", 1)[0]] += n
        expected[None] += entry.get("unattributed", 0)
    assert kinds == expected


# -- the converter --------------------------------------------------------------------------------
def test_gzip_named_directly_nested_folders_and_stdout(tmp_path, capsys):
    gz = next(p for p in walk([os.path.join(TESTDATA, "cloudtrail")]) if p.endswith(".gz"))
    assert convert_main([gz], "-", None) == 0
    out, err = capsys.readouterr()
    assert "cloudtrail: 3 read, 2 mapped, 1 skipped" in err
    lines = out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["resourceLogs"]
    nested = tmp_path / "a" / "b" / "c"
    nested.mkdir(parents=True)
    shutil.copy(gz, nested / "x.json.gz")
    shutil.copy(gz, nested / "renamed-without-extension")
    (tmp_path / "a" / "README.md").write_text("not records")
    assert convert_main([str(tmp_path)], str(tmp_path / "out.jsonl"), None) == 0
    assert "6 read" in capsys.readouterr().err


def test_record_without_a_time_is_an_error_naming_file_and_line(tmp_path, capsys):
    lines = (tmp_path / "trail.jsonl")
    good = {"eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "eventTime": "2026-11-02T09:00:00Z",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::1:user/u"}}
    bad = {k: v for k, v in good.items() if k != "eventTime"}
    lines.write_text("\n".join(json.dumps(x) for x in (good, good, bad)) + "\n")
    out = tmp_path / "out.jsonl"
    assert convert_main([str(lines)], str(out), None) == 1
    err = capsys.readouterr().err
    assert f"{lines}:3" in err and "no eventTime" in err
    requests = [parse_json(line, ExportLogsServiceRequest) for line in out.read_text().splitlines()]
    times = [r.time_unix_nano for r in _records(requests)]
    assert times == [time_ns("2026-11-02T09:00:00Z")] * 2  # never 0


def test_unrecognised_records_forced_profile_and_bad_arguments(tmp_path, capsys):
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"hello": "world", "time": "2026-11-02T09:00:00Z"}]))
    assert convert_main([str(odd)], "-", None) == 1  # nothing written is not success
    err = capsys.readouterr().err
    assert "unrecognised: 1" in err and "--profile" in err and "nothing written" in err
    assert convert_main([str(odd)], "-", "github") == 1  # forced: read, and says why it is unusable
    assert convert_main([str(odd)], "-", "nope") == 2
    assert convert_main([str(tmp_path / "missing")], "-", None) == 2
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(gzip.compress(b'{"Records": [{"eventSource": ')[:-4])
    assert convert_main([str(broken)], "-", None) == 1
    assert str(broken) in capsys.readouterr().err


def test_cloudwatch_and_graph_envelopes_and_log_analytics_time_formats():
    assert time_ns("11/2/2026, 1:40:00.000 PM") == time_ns("2026-11-02T13:40:00Z")
    assert time_ns("11/2/2026, 12:05:00 AM") == time_ns("2026-11-02T00:05:00Z")
    assert time_ns(1762088400000) == time_ns("2025-11-02T13:00:00Z")  # GitHub's milliseconds
    with pytest.raises(Unusable):
        time_ns("13/45/2026, 1:00:00 PM")


# -- any record, hostile or not ---------------------------------------------------------------------
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                     st.text(max_size=40), st.sampled_from(["2026-11-02T09:00:00Z", "1762088400000", "{", "[]",
                                                            "system:serviceaccount:a:b", "[aws-cli/1]"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)
_FIELDS = ["eventSource", "eventName", "eventTime", "@timestamp", "userIdentity", "category", "Type", "properties",
           "protoPayload", "auditID", "stage", "user", "verb", "Workload", "Operation", "UserId", "CreationTime",
           "action", "actor", "_document_id", "token_id", "hashed_token", "activityDisplayName", "initiatedBy",
           "targetResources", "createdDateTime", "appId", "message", "time", "ResultType", "InitiatedBy",
           "TargetResources", "timestamp", "responseElements", "requestParameters"]
_CATEGORIES = st.sampled_from(["SignInLogs", "ServicePrincipalSignInLogs", "ManagedIdentitySignInLogs", "AuditLogs",
                               "kube-audit", "OfficeActivity", "AADServicePrincipalSignInLogs", "x"])
_RECORDS = st.dictionaries(st.sampled_from(_FIELDS), st.one_of(_VALUES, _CATEGORIES), min_size=1, max_size=10)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_RECORDS, as_text=st.booleans())
def test_any_vendor_like_record_maps_or_is_skipped_with_a_reason_and_is_forwarded_intact(data, as_text):
    name = profile_of(data)
    if name is not None:
        try:
            result = PROFILES[name](__import__("otel_processor.inputs.record", fromlist=["VendorRecord"])
                                    .VendorRecord(data, 1_700_000_000_000_000_000))
        except Unusable as exc:
            assert str(exc)
        else:
            assert isinstance(result, (Mapped, Skipped))
            if isinstance(result, Skipped):
                assert result.reason
            else:
                assert result.time_ns > 0 and all(isinstance(k, str) for k in result.attrs)
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.time_unix_nano = 1_700_000_000_000_000_000
    if as_text:
        record.body.string_value = json.dumps(data, default=str)
    else:
        set_value(record.body, data)
    before = record.body.SerializeToString()
    result = BatchProcessor().process_logs(request)
    assert result.records == 1 and result.failed == 0
    out = request.resource_logs[0].scope_logs[0].log_records[0]
    assert out.body.SerializeToString() == before or "[masked]" in str(out.body) or "sha256:" in str(out.body)
    assert all(kv.key.startswith("nhi.") for kv in out.attributes)


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YTpiIn0.c2lnbmF0dXJlMTIzNDU2"
GITHUB = "ghp_" + "Zq3" * 12


@pytest.mark.parametrize("as_text", [False, True])
def test_secrets_in_vendor_bodies_are_masked_before_anything_reads_them(as_text):
    """A bearer token in a Kubernetes request URI, a GitHub token in a user agent, an STS session
    token in a CloudTrail response: none leaves, in the record or in an event, and the identity
    is still resolved from what remains."""
    k8s = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a-1", "stage": "ResponseComplete",
           "verb": "get", "requestURI": f"/api/v1/namespaces/a/secrets?access_token={JWT}",
           "user": {"username": "system:serviceaccount:a:b"}, "sourceIPs": ["203.0.113.7"],
           "userAgent": f"curl/8.5.0 token {GITHUB}", "objectRef": {"resource": "secrets", "namespace": "a"},
           "responseStatus": {"code": 200}, "stageTimestamp": "2026-11-02T14:00:00Z"}
    trail = {"eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "eventTime": "2026-11-02T14:00:01Z",
             "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/r/s", "accessKeyId": "ASIAEXAMPLE1"},
             "responseElements": {"credentials": {"accessKeyId": "ASIAEXAMPLE2", "sessionToken": JWT,
                                                  "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}}
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for body in (k8s, trail):
        record = scope.log_records.add()
        record.time_unix_nano = time_ns("2026-11-02T14:00:00Z")
        if as_text:
            record.body.string_value = json.dumps(body)
        else:
            set_value(record.body, body)
    processor = BatchProcessor()
    result = processor.process_logs(request)
    out = request.SerializeToString()
    for secret in (JWT, GITHUB, "wJalrXUtnFEMI", JWT[:40]):
        assert secret.encode() not in out
        assert all(secret not in e.body for e in result.events)
    ids = [attrs_of(r.attributes).get("nhi.identity.id") for r in _records([request])]
    assert ids == ["workload:system:serviceaccount:a:b", "workload:arn:aws:iam::1:role/r"]


def test_oversized_and_deeply_nested_bodies_are_forwarded_unread():
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    big = scope.log_records.add()
    big.time_unix_nano = 1
    big.body.string_value = json.dumps({"eventSource": "s3.amazonaws.com", "eventName": "GetObject",
                                        "pad": "x" * (1 << 20)})
    deep = scope.log_records.add()
    deep.time_unix_nano = 1
    deep.body.string_value = '{"auditID":' + "[" * 5000 + "]" * 5000 + "}"
    before = request.SerializeToString()
    result = BatchProcessor().process_logs(request)
    assert result.records == 2 and result.unattributed == 2 and result.failed == 0
    assert request.SerializeToString() == before


def test_a_sender_cannot_forge_issuance_related_identities_or_targets():
    """The facts vendor profiles hand the engine travel as nhi.* keys inside the processor; the
    same keys arriving on a record are dropped before anything reads them."""
    from otlp_builders import logs

    forged = {"event.category": "iam", "event.action": "token.issued", "user.id": "system:serviceaccount:a:b",
              "nhi.credential.id": "ASIAFORGED", "nhi.credential.created": "ASIAFORGED",
              "nhi.credential.issued_to": "someone-innocent", "nhi.credential.issued_by": "ec2.amazonaws.com",
              "nhi.target.identity": "oauth_app:x", "nhi.identity.related": "human:ceo@example.com"}
    request = logs({"service.name": "x"}, {"attrs": forged})
    processor = BatchProcessor()
    processor.process_logs(request)
    out = attrs_of(request.resource_logs[0].scope_logs[0].log_records[0].attributes)
    assert out["nhi.identity.id"] == "workload:system:serviceaccount:a:b"
    assert not {k for k in out if k.startswith("nhi.")} - {"nhi.identity.id", "nhi.identity.kind",
                                                           "nhi.identity.source", "nhi.trust.score"}
    assert processor.engine.credential("ASIAFORGED") is None
