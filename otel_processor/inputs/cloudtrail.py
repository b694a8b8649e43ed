"""AWS CloudTrail records as OTLP log records, as the Collector's AWS logs encoding extension maps them.

The OpenTelemetry Collector (contrib ``awslogsencodingextension``, CloudTrail format) puts
``eventSource`` in ``rpc.service``, ``eventName`` in ``rpc.method``, the caller in
``aws.principal.*``, and the event time in the record's time. This module does the same for
CloudTrail delivery files (``{"Records": [...]}``) so that captures can be replayed through the
processor, and so tests can use public real-world data.

    python -m otel_processor.inputs.cloudtrail FILE_OR_DIR ... --out trail.otlp.jsonl

writes OTLP JSON lines (the Collector file exporter's format) that ``nhi-sim replay --from``
replays.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import sys
from collections.abc import Iterable, Iterator

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from ..anyvalue import set_value
from ..otlp_json import to_otlp_json


def event_time_ns(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)


def record_attributes(event: dict) -> dict:
    ident = event.get("userIdentity") or {}
    attrs = {
        "rpc.system": "aws-api",
        "rpc.service": event.get("eventSource"),
        "rpc.method": event.get("eventName"),
        "source.address": event.get("sourceIPAddress"),
        "user_agent.original": event.get("userAgent"),
        "aws.principal.arn": ident.get("arn"),
        "aws.principal.id": ident.get("principalId"),
        "aws.principal.type": ident.get("type"),
        "aws.access_key.id": ident.get("accessKeyId"),
        "aws.error.code": event.get("errorCode"),
        "aws.error.message": event.get("errorMessage"),
        "aws.request.parameters": event.get("requestParameters"),
        "aws.resources": event.get("resources"),
        "aws.cloudtrail.event_id": event.get("eventID"),
        "aws.request_id": event.get("requestID"),
        "aws.event.type": event.get("eventType"),
        "cloud.region": event.get("awsRegion"),
    }
    return {k: v for k, v in attrs.items() if v not in (None, "", [], {})}


def to_requests(events: Iterable[dict], batch_size: int = 512) -> Iterator[ExportLogsServiceRequest]:
    """Events (in any order) as OTLP requests in event-time order, one resource per account."""
    ordered = sorted(events, key=lambda e: e.get("eventTime", ""))
    for start in range(0, len(ordered), batch_size):
        request = ExportLogsServiceRequest()
        by_account: dict[str, object] = {}
        for event in ordered[start:start + batch_size]:
            account = event.get("recipientAccountId") or (event.get("userIdentity") or {}).get("accountId") or ""
            scope = by_account.get(account)
            if scope is None:
                rl = request.resource_logs.add()
                for key, value in (("cloud.provider", "aws"), ("cloud.platform", "aws_cloudtrail"),
                                   ("cloud.account.id", account)):
                    kv = rl.resource.attributes.add()
                    kv.key, kv.value.string_value = key, value
                scope = by_account[account] = rl.scope_logs.add()
                scope.scope.name = "awslogsencodingextension/cloudtrail"
            record = scope.log_records.add()
            if event.get("eventTime"):
                record.time_unix_nano = event_time_ns(event["eventTime"])
            record.observed_time_unix_nano = record.time_unix_nano
            for key, value in record_attributes(event).items():
                kv = record.attributes.add()
                kv.key = key
                set_value(kv.value, value)
        yield request


def read_events(paths: Iterable[str]) -> list[dict]:
    events: list[dict] = []
    for path in paths:
        files = sorted(glob.glob(os.path.join(path, "*.json"))) if os.path.isdir(path) else [path]
        for name in files:
            with open(name, encoding="utf-8") as fh:
                data = json.load(fh)
            events.extend(data.get("Records", []) if isinstance(data, dict) else data)
    return events


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="CloudTrail JSON -> OTLP JSON lines")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    count = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for request in to_requests(read_events(args.paths)):
            out.write(json.dumps({"resourceLogs": to_otlp_json(request).get("resourceLogs", [])}) + "\n")
            count += sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    print(f"{count} CloudTrail events written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
