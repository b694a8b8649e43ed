"""An event's fields, as a SIEM routes on them: the latest value of each fact, OCSF's activity
(Create for an incident's first event, Update after) and severity by score band, the same band
in both formats. Panther-style: each mapping with the case that gives each of its values."""

from __future__ import annotations

import dataclasses

import pytest
from opentelemetry.proto.logs.v1 import logs_pb2

from otel_processor.anyvalue import to_python
from otel_processor.model import ConvergenceEvent, Identity
from otel_processor.outputs.event_facts import severity_band
from otel_processor.outputs.events import fill_record
from otel_processor.outputs.ocsf import detection_finding

T0 = 1_772_700_000 * 10**9
ROLE = Identity("workload:arn:aws:iam::111122223333:role/deploy", "workload",
                "arn:aws:iam::111122223333:role/deploy", "aws.principal.arn")
EVENT = ConvergenceEvent(
    convergence_id="c0ffee", identity=ROLE, score=0.8, signals=("app",), findings=("volume: 12x",),
    first_seen_ns=T0, last_seen_ns=T0 + 60 * 10**9, time_ns=T0 + 60 * 10**9, trace_id=b"", span_id=b"",
    evidence_trace_ids=(), related_identities=(), body="b", rule_name="Bulk read", rule_category="Collection",
    rule_references=("T1530",), rule_description="d",
    facts={"source.address": ("10.20.3.4", "203.0.113.9"), "user_agent.original": ("aws-sdk-go/1", "curl/8.1"),
           "geo.country.iso_code": ("DE", "NL"), "credential": ("ASIAOLDKEY0000000001", "ASIANEWKEY0000000002"),
           "action": ("s3.amazonaws.com/GetObject",), "target": ("backups/db-1",)})


def _attributes(event: ConvergenceEvent) -> dict:
    record = logs_pb2.LogRecord()
    fill_record(record, event)
    return {kv.key: to_python(kv.value) for kv in record.attributes}


def test_the_single_value_fields_are_the_latest_facts_in_both_formats():
    a = _attributes(EVENT)
    assert (a["source.address"], a["user_agent.original"], a["geo.country.iso_code"], a["nhi.credential.id"]) == \
        ("203.0.113.9", "curl/8.1", "NL", "ASIANEWKEY0000000002")
    finding = detection_finding(EVENT)
    assert finding["actor"]["user"]["credential_uid"] == "ASIANEWKEY0000000002"
    assert finding["evidences"][0]["src_endpoint"] == {"ip": "203.0.113.9"}


@pytest.mark.parametrize("version, activity_id, activity", [(1, 1, "Create"), (2, 2, "Update"), (5, 2, "Update")])
def test_ocsf_activity_is_create_for_an_incidents_first_event_and_update_after(version, activity_id, activity):
    finding = detection_finding(dataclasses.replace(EVENT, version=version))
    assert (finding["activity_id"], finding["activity_name"], finding["type_uid"]) == \
        (activity_id, activity, 2004 * 100 + activity_id)


@pytest.mark.parametrize("score, severity_id, severity", [
    (0.3, 2, "Low"), (0.5, 3, "Medium"), (0.69, 3, "Medium"), (0.7, 4, "High"), (0.9, 5, "Critical"), (1.0, 5, "Critical")])
def test_ocsf_severity_follows_the_score_band(score, severity_id, severity):
    finding = detection_finding(dataclasses.replace(EVENT, score=score))
    assert (finding["severity_id"], finding["severity"]) == (severity_id, severity)
    assert severity_band(score) == severity.lower()
