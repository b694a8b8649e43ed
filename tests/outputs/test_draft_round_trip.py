"""``exceptions draft`` round-trips: for every incident a simulated week raises, the exception
drafted from its event, in each of the three forms a user has it in (OTLP JSON as the Collector's
file exporter writes it, the flat attributes, the OCSF finding), keeps back that event and no
event of another identity. The world is the tests' held-back week, processed in-process."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml

from otel_processor.cli import read_event
from otel_processor.otlp_json import to_otlp_json
from otel_processor.outputs.events import events_request
from otel_processor.outputs.exceptions import draft, load_exceptions
from otel_processor.outputs.ocsf import detection_finding
from otel_processor.pipeline import BatchProcessor
from otlp_builders import attrs_of
from worlds import requests_of


@pytest.fixture(scope="module")
def events(vendor_week):
    processor = BatchProcessor()
    out = []
    for signal, request, _ in requests_of(vendor_week.records):
        out += (processor.process_traces if signal == "traces" else processor.process_logs)(request).events
    latest = {}
    for e in out:  # an incident's latest version: what a responder drafts from
        latest[e.convergence_id] = e
    assert len(latest) >= 10
    return list(latest.values())


def _forms(event, tmp_path) -> dict[str, dict]:
    request = events_request([event], "nhi-convergence")
    otlp = tmp_path / "event.otlp.json"
    otlp.write_text(json.dumps(to_otlp_json(request)) + "\n")
    flat = tmp_path / "event.flat.json"
    flat.write_text(json.dumps(attrs_of(request.resource_logs[0].scope_logs[0].log_records[0].attributes)))
    ocsf = tmp_path / "event.ocsf.json"
    ocsf.write_text(json.dumps(detection_finding(event)))
    return {name: read_event(str(path)) for name, path in (("otlp", otlp), ("flat", flat), ("ocsf", ocsf))}


def test_an_exception_drafted_from_any_form_keeps_back_its_event_and_no_other_identitys(events, tmp_path):
    failures = []
    for event in events:
        for form, attrs in _forms(event, tmp_path).items():
            today = dt.datetime.fromtimestamp(event.time_ns / 1e9, dt.timezone.utc).date()
            text = yaml.safe_load(draft(attrs, today=today))
            text["exceptions"][0].update(owner="platform@example.com", reason="reviewed")
            path = tmp_path / f"{form}.yaml"
            path.write_text(yaml.safe_dump(text))
            drafted = load_exceptions(str(path))
            if drafted.matching(event) is None:
                failures.append(f"{form}: {event.identity.id} {event.rule_name}: its own event not matched")
            others = [o for o in events if o.identity.id != event.identity.id and drafted.matching(o)]
            if others:
                failures.append(f"{form}: {event.identity.id}: also matches {others[0].identity.id}")
    assert failures == []
