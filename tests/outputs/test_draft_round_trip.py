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


def test_the_sink_writes_events_as_json_lines_that_draft_reads_by_id(events, tmp_path):
    """`nhi-sim sink --json FILE` keeps every event it prints, one JSON object per line;
    `exceptions draft FILE --id ID` drafts from the latest version of that incident."""
    import subprocess
    import sys
    import threading

    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    from simulator.watch import run_sink
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out_path = tmp_path / "events.jsonl"
    stop = threading.Event()
    import io
    printed = io.StringIO()
    thread = threading.Thread(target=run_sink, args=(f"127.0.0.1:{port}", 0.2, printed, stop),
                              kwargs={"json_path": str(out_path)})
    thread.start()
    try:
        chosen = events[:3]
        for _ in range(100):
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    logs_service_pb2_grpc.LogsServiceStub(channel).Export(
                        events_request(chosen, "nhi-convergence"), timeout=5)
                break
            except grpc.RpcError:
                import time
                time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    lines = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [line["nhi.convergence.id"] for line in lines] == [e.convergence_id for e in chosen]
    target = chosen[1]
    done = subprocess.run([sys.executable, "-m", "otel_processor", "exceptions", "draft", str(out_path),
                           "--id", target.convergence_id], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["exceptions"][0]["match"]["identity"] == target.identity.id
