"""Hosting the engine inside the Rotel collector (``rotel`` on PyPI, 0.0.1a15).

Rotel runs Python processor files in one embedded interpreter (the system's libpython), calling
``process_spans(resource_spans)`` and ``process_logs(resource_logs)`` on several threads with its
own object model. The two files in ``processors/`` import this module, so both signals share
one ``BatchProcessor`` and one engine.

Per call: Rotel's batch is copied into an OTLP protobuf request, processed by the same batch path
as ``serve``, and the result written back in place (credential values masked, ``nhi.*`` appended,
forged ``nhi.*`` dropped). Convergence events cannot be added to a trace batch, so they leave
through this module's own OTLP exporter, on a background thread with a bounded queue. Nothing may
escape a processor function (an exception aborts Rotel): any error leaves the batch as it came
and is counted. No reference to Rotel's objects is kept after a call returns.

What Rotel's acknowledgement means: Rotel answers the sender once a request is queued, before
the processor runs, so a crash of the Rotel process can lose what it had accepted. ``serve``
acknowledges only after the downstream accepted the batch.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ...anyvalue import set_value
from ...identity.credentials import CREDENTIAL_ATTRIBUTES
from ...outputs.enrich import OUR_ATTRIBUTES

log = logging.getLogger(__name__)

ENV_CONFIG = "NHI_CONFIG_JSON"
PROCESSOR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "processors")
MAX_QUEUED_EVENT_BATCHES = 1000


# -- Rotel objects <-> OTLP protobuf ------------------------------------------------------------
def _rotel_to_python(value):
    """A Rotel AnyValue's ``.value`` as plain Python (its ArrayValue and KeyValueList iterate)."""
    if value is None or isinstance(value, (str, bool, int, float, bytes, bytearray)):
        return value
    items = list(value)
    if items and hasattr(items[0], "key"):
        return {kv.key: _rotel_to_python(kv.value.value if kv.value is not None else None) for kv in items}
    return [_rotel_to_python(item.value if item is not None else None) for item in items]


def _copy_attributes(repeated, attributes) -> None:
    for kv in attributes:
        out = repeated.add()
        out.key = kv.key
        set_value(out.value, _rotel_to_python(kv.value.value if kv.value is not None else None))


def _rotel_value(sdk, value):
    """A protobuf AnyValue as a Rotel AnyValue (strings, numbers, string arrays: what we write)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        array = sdk.ArrayValue()
        for v in value.array_value.values:
            array.append(sdk.AnyValue(_plain(v)))
        return sdk.AnyValue(array)
    return sdk.AnyValue(_plain(value))


def _plain(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _write_back(sdk, rotel_attributes, proto_attributes) -> None:
    """Make Rotel's attribute list match what the batch path produced."""
    original = list(rotel_attributes)
    if len(proto_attributes) >= len(original) and all(
            kv.key == proto_attributes[i].key for i, kv in enumerate(original)):
        for i, kv in enumerate(original):
            if kv.key in CREDENTIAL_ATTRIBUTES:
                kv.value = _rotel_value(sdk, proto_attributes[i].value)
        for kv in proto_attributes[len(original):]:
            rotel_attributes.append(sdk.KeyValue(kv.key, _rotel_value(sdk, kv.value)))
        return
    # Forged nhi.* attributes were dropped: rebuild the list (rare).
    by_key = {kv.key: kv for kv in original}
    rebuilt = []
    for kv in proto_attributes:
        kept = by_key.get(kv.key)
        rebuilt.append(kept if kept is not None and kv.key not in OUR_ATTRIBUTES
                       else sdk.KeyValue(kv.key, _rotel_value(sdk, kv.value)))
    rotel_attributes[:] = rebuilt


def spans_request(resource_spans) -> tuple[ExportTraceServiceRequest, list]:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    if resource_spans.resource is not None:
        _copy_attributes(rs.resource.attributes, resource_spans.resource.attributes)
    spans = []
    for scope_spans in resource_spans.scope_spans:
        ss = rs.scope_spans.add()
        for span in scope_spans.spans:
            out = ss.spans.add()
            out.trace_id = bytes(span.trace_id)
            out.span_id = bytes(span.span_id)
            out.name = span.name
            out.kind = int(span.kind)
            out.start_time_unix_nano = span.start_time_unix_nano
            out.end_time_unix_nano = span.end_time_unix_nano
            if span.status is not None:
                out.status.code = int(span.status.code)
            _copy_attributes(out.attributes, span.attributes)
            spans.append((span, out))
    return request, spans


def logs_request(resource_logs) -> tuple[ExportLogsServiceRequest, list]:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    if resource_logs.resource is not None:
        _copy_attributes(rl.resource.attributes, resource_logs.resource.attributes)
    records = []
    for scope_logs in resource_logs.scope_logs:
        sl = rl.scope_logs.add()
        for record in scope_logs.log_records:
            out = sl.log_records.add()
            out.time_unix_nano = record.time_unix_nano
            out.observed_time_unix_nano = record.observed_time_unix_nano
            out.trace_id = bytes(record.trace_id)
            out.span_id = bytes(record.span_id)
            name = getattr(record, "event_name", None)
            if name:
                out.event_name = name
            _copy_attributes(out.attributes, record.attributes)
            records.append((record, out))
    return request, records


# -- the shared engine and its event exporter ---------------------------------------------------
class RotelEngine:
    """One per Rotel process (module-level singleton in ``instance()``)."""

    def __init__(self, config=None):
        from ...config import ProcessorConfig
        from ...engine import Engine
        from ...identity.catalog import load_catalog
        from ...pipeline import BatchProcessor
        from ..serve.forwarder import make_forwarder

        self.config = config or ProcessorConfig()
        catalog = load_catalog(self.config.catalog) if self.config.catalog else None
        self.engine = Engine(self.config.engine, catalog=catalog)
        self.processor = BatchProcessor(self.config, engine=self.engine, catalog=catalog)
        self._forwarder = make_forwarder(self.config.events_target, self.config.service.forward_timeout_s)
        self._events: queue.Queue = queue.Queue(maxsize=MAX_QUEUED_EVENT_BATCHES)
        self.errors = 0
        self.dropped_event_batches = 0
        self._state_path = (os.path.join(self.config.state_dir, "engine-state.json.gz")
                            if self.config.state_dir else None)
        if self._state_path and os.path.exists(self._state_path):
            self.engine.restore_from(self._state_path)
        threading.Thread(target=self._ship_events, name="nhi-events", daemon=True).start()
        if self._state_path:
            threading.Thread(target=self._snapshots, name="nhi-snapshot", daemon=True).start()

    def process_spans(self, resource_spans) -> None:
        self._process(resource_spans, spans_request, self.processor.process_traces, "span")

    def process_logs(self, resource_logs) -> None:
        self._process(resource_logs, logs_request, self.processor.process_logs, "log")

    def _process(self, batch, to_request, process, what: str) -> None:
        try:
            from rotel_sdk.open_telemetry.common import v1 as sdk

            request, pairs = to_request(batch)
            result = process(request)
            for item, out in pairs:
                _write_back(sdk, item.attributes, out.attributes)
            self._queue_events(result.events)
        except Exception:  # noqa: BLE001 - an exception escaping would abort Rotel
            self.errors += 1
            log.exception("%s batch left unchanged", what)

    def _queue_events(self, events) -> None:
        if not events:
            return
        from ...outputs.events import events_request

        try:
            self._events.put_nowait(events_request(events, self.config.events.service_name))
        except queue.Full:
            self.dropped_event_batches += 1
            log.error("event queue full: %d convergence events dropped", len(events))

    def _ship_events(self) -> None:
        from ..serve.forwarder import ForwardError

        while True:
            request = self._events.get()
            delay = 0.2
            while True:
                try:
                    self._forwarder.export("logs", request)
                    break
                except ForwardError as exc:
                    log.warning("events endpoint refused (%s); retrying", exc)
                    time.sleep(delay)
                    delay = min(delay * 2, 10.0)

    def _snapshots(self) -> None:
        while True:
            time.sleep(self.config.snapshot_interval_s)
            try:
                with self.processor._lock:
                    self.engine.snapshot_to(self._state_path)
            except Exception:  # noqa: BLE001
                log.exception("state snapshot failed")


_INSTANCE: RotelEngine | None = None
_INSTANCE_LOCK = threading.Lock()


def instance() -> RotelEngine:
    global _INSTANCE
    with _INSTANCE_LOCK:
        if _INSTANCE is None:
            _INSTANCE = RotelEngine(_config_from_env())
        return _INSTANCE


def _config_from_env():
    from ...config import ProcessorConfig
    from ...yamlbind import load

    text = os.environ.get(ENV_CONFIG)
    return load(text, ProcessorConfig, ENV_CONFIG) if text else ProcessorConfig()


# -- `nhi-processor rotel` ---------------------------------------------------------------------
def rotel_binary() -> str:
    try:
        import rotel
    except ImportError:
        raise SystemExit("nhi-processor rotel needs the rotel package: pip install 'nhi-convergence[rotel]'")
    path = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
    if not os.path.exists(path):
        raise SystemExit(f"rotel package has no rotel-agent binary at {path}")
    return path


def _otlp_url(endpoint: str) -> tuple[str, str]:
    if endpoint.startswith(("http://", "https://")):
        return endpoint, "http"
    return f"http://{endpoint}", "grpc"


def rotel_command(config) -> list[str]:
    svc = config.service
    url, protocol = _otlp_url(svc.forward_target.endpoint)
    cmd = [rotel_binary(), "start", "--exporter", "otlp", "--otlp-exporter-endpoint", url,
           "--otlp-exporter-protocol", protocol,
           "--otlp-with-trace-processor", os.path.join(PROCESSOR_DIR, "traces.py"),
           "--otlp-with-logs-processor", os.path.join(PROCESSOR_DIR, "logs.py")]
    if svc.listen_grpc:
        cmd += ["--otlp-grpc-endpoint", svc.listen_grpc]
    if svc.listen_http:
        cmd += ["--otlp-http-endpoint", svc.listen_http]
    return cmd


def rotel_environment(config) -> dict[str, str]:
    """The embedded interpreter finds our packages (and their dependencies) through PYTHONPATH."""
    import dataclasses

    project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([project, *site])
    env[ENV_CONFIG] = json.dumps(dataclasses.asdict(config))
    return env


def run_cli(args, config) -> int:
    """Start Rotel with the processor wired in; forward SIGTERM/SIGINT; exit with its code."""
    proc = subprocess.Popen(rotel_command(config), env=rotel_environment(config))
    print(f"nhi-processor: Rotel (pid {proc.pid}) listening on {config.service.listen_grpc} (gRPC) / "
          f"{config.service.listen_http} (HTTP); forwarding to {config.service.forward_target.describe()}; "
          f"events to {config.events_target.describe()}", flush=True)

    def forward(signum, _frame):
        proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    return proc.wait()
