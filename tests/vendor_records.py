"""A vendor record as a Collector delivers it (the record as a log body), attributed by the
processor: what the identity table and the who-acted tests replay."""

from __future__ import annotations

import copy
import json
import os
import time

from otel_processor.anyvalue import set_value
from otel_processor.inputs.files import records
from otel_processor.pipeline import BatchProcessor
from otlp_builders import attrs_of, logs
from paths import ROOT


def record_of(reference: str) -> dict:
    """``path`` (one JSON record) or ``path#n`` (the n-th record of a vendor file, as convert reads it)."""
    path, _, index = reference.partition("#")
    path = os.path.join(ROOT, path)
    if not index:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    return list(records(path))[int(index)].data


def attributed(body: dict) -> dict:
    request = logs({"cloud.provider": "any"}, {"attrs": {}})
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    set_value(record.body, body)
    record.time_unix_nano = 1  # a table export row may carry no time of its own
    BatchProcessor().process_logs(request)
    return attrs_of(record.attributes)


# -- CloudTrail records in the vendor's schema, timed as a test needs ------------------------------
S = 10**9
TEMPLATE = record_of("tests/testdata/identity/cloudtrail-instance-role-session.json")


def _iso(t_ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_ns // S))


def cloudtrail(t_ns: int, role: str, secret: str, address: str = "10.20.3.7", session: str = "i-0abc",
               user_agent: str | None = None) -> dict:
    record = copy.deepcopy(TEMPLATE)
    record["userIdentity"]["arn"] = f"arn:aws:sts::111122223333:assumed-role/{role}/{session}"
    if user_agent is not None:
        record["userAgent"] = user_agent
    record["eventTime"] = _iso(t_ns)
    record["requestParameters"]["secretId"] = secret
    record["sourceIPAddress"] = address
    record["eventID"] = f"{role}-{secret}-{t_ns}"
    return record


def send(processor: BatchProcessor, bodies: list) -> list[dict]:
    """``bodies`` as one request, as a Collector delivers vendor records; the events go to
    ``processor.events`` (a list the caller sets), the records' attributes are returned."""
    request = logs({"cloud.provider": "aws"}, *({"attrs": {}} for _ in bodies))
    records = request.resource_logs[0].scope_logs[0].log_records
    for record, body in zip(records, bodies):
        set_value(record.body, body)
    result = processor.process_logs(request)
    processor.events += result.events
    return [attrs_of(r.attributes) for r in records]
