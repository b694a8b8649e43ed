"""A vendor record as a Collector delivers it (the record as a log body), attributed by the
processor: what the identity table and the who-acted tests replay."""

from __future__ import annotations

import json
import os

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
