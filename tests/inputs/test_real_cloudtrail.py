"""Public real-world telemetry nobody on this project wrote: the Invictus AWS CloudTrail capture.

Read from ../shared/datasets (never copied into the repo). The attack tool's user-agent tag and
Terraform's are stripped from what the processor sees, as the dataset's README asks; they are
not used here at all. Default settings: the capture is 55 minutes long, so baselines cannot
warm up and only detection that needs no history can fire.

Both ways the capture can arrive are replayed: converted (``nhi-processor convert`` on the
native S3 layout, gzipped, the record as the log body) and as the Collector's AWS logs encoding
maps it (attributes). They must agree on the one event.
"""

from __future__ import annotations

import gzip
import json
import os
import re

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_processor.inputs import cloudtrail
from otel_processor.inputs.convert import main as convert_main
from otel_processor.inputs.files import records, walk
from otel_processor.inputs.record import VendorRecord
from otel_processor.otlp_json import parse_json
from otel_processor.pipeline import BatchProcessor
from paths import ROOT

from otlp_builders import logs

DATASET = os.path.join(ROOT, "..", "shared", "datasets", "invictus-aws-cloudtrail",
                       "CloudTrail")
TAGS = re.compile(r"\s*stratus-red-team_[0-9a-f-]+")
ROLE = "workload:arn:aws:iam::123837392027:role/stratus-red-team-ec2-steal-credentials-role"
# The IAM user whose long-lived access key ran the whole simulation: a key, not a person at a
# console (its console records are sessionCredentialFromConsole), and it swept Secrets Manager.
KEY = "api_key:arn:aws:iam::123837392027:user/bert-jan/AKIATFQR7NSC8Q4X20BJ"

pytestmark = pytest.mark.skipif(not os.path.isdir(DATASET), reason="shared dataset not present")


def _events() -> list[dict]:
    events = [found.data for path in walk([DATASET]) for found in records(path)]
    for e in events:
        if "userAgent" in e:
            e["userAgent"] = TAGS.sub("", e["userAgent"])
    return events


def _as_published(tmp_path, events) -> str:
    """The capture laid out as CloudTrail delivers it to S3: nested folders, gzipped envelopes."""
    top = tmp_path / "AWSLogs"
    folder = top / "123837392027" / "CloudTrail" / "us-east-1" / "2023" / "07" / "10"
    folder.mkdir(parents=True)
    for n in range(0, len(events), 1000):
        with gzip.open(folder / f"123837392027_CloudTrail_us-east-1_{n}.json.gz", "wt") as f:
            json.dump({"Records": events[n:n + 1000]}, f)
    return str(top)


def _run(requests) -> tuple[list, int, int]:
    processor = BatchProcessor()
    out, total, attributed = [], 0, 0
    for request in requests:
        result = processor.process_logs(request)
        out += result.events
        total += result.records
        attributed += result.attributed
    return out, total, attributed


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    events = _events()
    tmp = tmp_path_factory.mktemp("invictus")
    out = tmp / "otlp.jsonl"
    assert convert_main([_as_published(tmp, events)], str(out), None) == 0
    requests = [parse_json(line, ExportLogsServiceRequest) for line in out.read_text().splitlines()]
    return events, _run(requests)


def test_every_record_is_converted_and_every_principal_resolves(converted):
    events, (_, total, attributed) = converted
    assert total == len(events) == 2900
    with_arn = sum(1 for e in events if (e.get("userIdentity") or {}).get("arn"))
    # EC2 handing instances their role sessions (AssumeRole by ec2.amazonaws.com) is attributed
    # to the session it opens.
    issued = sum(1 for e in events if (e.get("userIdentity") or {}).get("type") == "AWSService"
                 and ((e.get("responseElements") or {}).get("credentials") or {}).get("accessKeyId"))
    # Console sign-in steps name an IAM user without its ARN: built from the account and name.
    named = sum(1 for e in events if not (e.get("userIdentity") or {}).get("arn")
                and (e.get("userIdentity") or {}).get("type") == "IAMUser" and e["userIdentity"].get("userName"))
    assert issued > 0
    assert attributed == with_arn + issued + named


def test_converted_capture_raises_the_instance_credential_and_the_key_s_secret_sweep(converted):
    _, (out, _, _) = converted
    assert {e.identity.id for e in out} == {ROLE, KEY}
    event = next(e for e in out if e.identity.id == ROLE)
    assert "192.168.10.20" in event.body and "3.225.16.109" in event.body
    assert "T1552.005" in event.rule_references
    swept = [e for e in out if e.identity.id == KEY]
    assert any(f.startswith("first_sight.secret_sweep:") for e in swept for f in e.findings)


def test_collector_attribute_shape_gives_the_same_event():
    events = sorted(_events(), key=lambda e: e["eventTime"])
    requests = []
    for n in range(0, len(events), 512):
        requests.append(logs({"cloud.provider": "aws"}, *(
            {"time": VendorRecord(e).time("eventTime"), "attrs": cloudtrail.attributes(VendorRecord(e))}
            for e in events[n:n + 512])))
    out, total, attributed = _run(requests)
    assert total == 2900
    assert attributed == sum(1 for e in events if (e.get("userIdentity") or {}).get("arn"))
    assert {e.identity.id for e in out} == {ROLE, KEY}
