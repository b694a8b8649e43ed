"""Short captures of attacks that start cold (no history of any identity), in the vendor's own
layout, converted and replayed as a user would: the abused identity raises one event naming the
first-sight fact; no other identity in the capture does. Written from the vendor's public schema
and public write-ups of the technique (testdata/captures); the engine never sees these names."""

from __future__ import annotations

import os

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_processor.inputs.convert import main as convert_main
from otel_processor.otlp_json import parse_json
from otel_processor.outputs.events import severity_band
from otel_processor.pipeline import BatchProcessor

from paths import CAPTURES
# capture -> (the identity that must raise, the fact its event must name)
EXPECTED = {
    # An EC2 instance role's key, taken from the instance metadata service and used with the AWS
    # CLI on a Mac to list and read buckets (Stratus Red Team's ec2-steal-instance-credentials,
    # GuardDuty's InstanceCredentialExfiltration.OutsideAWS). An SSO engineer on a Mac and a
    # Lambda function act in the same minutes.
    "instance-credential-from-laptop.json": (
        "workload:arn:aws:iam::444455556666:role/app-server-role", "first_sight.instance_credential"),
    # A phished administrator adds a secret to a dormant application and consents to
    # Mail.ReadWrite for it (naming it by object id); the attacker signs in as the app and reads
    # the CFO's mailbox through Graph (the 2024 Midnight Blizzard pattern, CISA ED 24-02). A backup
    # app reads more mail in the same minutes without any grant; another app gets User.Read.
    "app-granted-mail-reads-mailbox": (
        "oauth_app:1f0e2d3c-4b5a-4968-8778-a1b2c3d4e5f6", "first_sight.granted_bulk_read"),
    # The same intrusion reading only what it came for: 7 messages of the CFO's mailbox, in one
    # read (a targeted read, as in the published capture of such an abuse). The backup app's
    # bulk reads without a grant stay quiet.
    "app-granted-mail-reads-seven-messages": (
        "oauth_app:1f0e2d3c-4b5a-4968-8778-a1b2c3d4e5f6", "first_sight.granted_bulk_read"),
}


@pytest.mark.parametrize("capture", sorted(EXPECTED))
def test_a_cold_capture_raises_one_event_on_the_abused_identity_only(capture, tmp_path):
    out = tmp_path / "otlp.jsonl"
    assert convert_main([os.path.join(CAPTURES, capture)], str(out), None) == 0
    processor = BatchProcessor()
    events, attributed, records = [], 0, 0
    for line in out.read_text().splitlines():
        result = processor.process_logs(parse_json(line, ExportLogsServiceRequest))
        events += result.events
        attributed += result.attributed
        records += result.records
    assert attributed == records > 0
    identity, fact = EXPECTED[capture]
    assert {e.identity.id for e in events} == {identity}
    assert any(f.startswith(fact + ":") for e in events for f in e.findings)
    assert severity_band(max(e.score for e in events)) in ("high", "critical")
