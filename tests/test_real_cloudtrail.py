"""Public real-world telemetry nobody on this project wrote: the Invictus AWS CloudTrail capture.

Read from ../shared/datasets (never copied into the repo). The attack tool's user-agent tag and
Terraform's are stripped from what the processor sees, as the dataset's README asks; they are
not used here at all. Default settings: the capture is 55 minutes long, so baselines cannot
warm up and only detection that needs no history can fire.
"""

from __future__ import annotations

import os
import re

import pytest

from otel_processor.pipeline import BatchProcessor
from otel_processor.inputs.cloudtrail import read_events, to_requests

DATASET = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "invictus-aws-cloudtrail",
                       "CloudTrail")
TAGS = re.compile(r"\s*stratus-red-team_[0-9a-f-]+")

pytestmark = pytest.mark.skipif(not os.path.isdir(DATASET), reason="shared dataset not present")


def replay():
    events = read_events([DATASET])
    for e in events:
        if "userAgent" in e:
            e["userAgent"] = TAGS.sub("", e["userAgent"])
    processor = BatchProcessor()
    out, records, attributed = [], 0, 0
    for request in to_requests(events):
        result = processor.process_logs(request)
        out += result.events
        records += result.records
        attributed += result.attributed
    return events, out, records, attributed


def test_every_event_is_read_and_principals_resolve():
    events, _, records, attributed = replay()
    assert records == len(events) == 2900
    with_arn = sum(1 for e in events if (e.get("userIdentity") or {}).get("arn"))
    assert attributed == with_arn


def test_instance_credential_used_off_the_instance_is_the_only_event():
    _, out, _, _ = replay()
    identities = {e.identity.id for e in out}
    assert identities == {
        "workload:arn:aws:iam::123837392027:role/stratus-red-team-ec2-steal-credentials-role"}
    event = out[0]
    assert "192.168.10.20" in event.body and "3.225.16.109" in event.body
    assert "T1552.005" in event.rule_references
