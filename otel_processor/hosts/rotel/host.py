"""Hosting the engine inside the Rotel collector (``rotel`` on PyPI, 0.0.1a15).

Rotel runs Python processor files in one embedded interpreter (the system's libpython), calling
``process_spans(resource_spans)`` and ``process_logs(resource_logs)`` on several threads with its
own object model. The two files in ``processors/`` import this module, so both signals share
one ``BatchProcessor`` and one engine.

Per call: Rotel's batch is copied whole into an OTLP protobuf request (``convert.py``), processed
by the same batch path as ``serve`` (masked, enriched, forged ``nhi.*`` dropped; metrics masked),
and written back in place. Convergence events cannot be added to a trace batch, so they leave
through this module's own OTLP exporter, on a background thread with a bounded queue. Nothing may
escape a processor function (an exception aborts Rotel): a batch that fails is still masked, or
emptied if even that fails, and counted. No reference to Rotel's objects is kept after a call.

What Rotel's acknowledgement means: Rotel answers the sender once a request is queued, before
the processor runs, so a crash of the Rotel process can lose what it had accepted. ``serve``
acknowledges only after the downstream accepted the batch.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from ...errors import ConfigError
from .convert import to_request, write_back

log = logging.getLogger(__name__)

ENV_CONFIG = "NHI_CONFIG_JSON"
PROCESSOR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "processors")
MAX_QUEUED_EVENT_BATCHES = 1000


# -- the shared engine and its event exporter ---------------------------------------------------
class RotelEngine:
    """One per Rotel process (module-level singleton in ``instance()``)."""

    def __init__(self, config=None):
        from ...config import ProcessorConfig
        from ...engine import Engine
        from ...identity.catalog import load_catalog
        from ...pipeline import BatchProcessor
        from ...pipeline.core import ReferenceCore
        from ..event_gate import EventGate
        from ..serve.forwarder import make_forwarder

        self.config = config or ProcessorConfig()
        catalog = load_catalog(self.config.catalog) if self.config.catalog else None
        self.engine = Engine(self.config.engine, catalog=catalog)
        self.processor = BatchProcessor(self.config, engine=self.engine, catalog=catalog)
        self.core = ReferenceCore(self.processor)
        self._forwarder = make_forwarder(self.config.events_target, self.config.service.forward_timeout_s)
        self.gate = EventGate(self.config)  # exceptions, a log line per event, the body format
        self._events: queue.Queue = queue.Queue(maxsize=MAX_QUEUED_EVENT_BATCHES)
        self.errors = 0
        self.dropped_batches = 0
        self.dropped_event_batches = 0
        self._state_path = (os.path.join(self.config.state_dir, "engine-state.json.gz")
                            if self.config.state_dir else None)
        if self._state_path and os.path.exists(self._state_path):
            self.engine.restore_from(self._state_path)
        threading.Thread(target=self._ship_events, name="nhi-events", daemon=True).start()
        atexit.register(self.flush, 5.0)
        if self._state_path:
            threading.Thread(target=self._snapshots, name="nhi-snapshot", daemon=True).start()

    def process(self, signal: str, batch) -> None:
        """One Rotel batch through the batch path, in place. Masked whatever fails: a batch that
        cannot be processed is scrubbed, and one that cannot even be scrubbed is emptied (counted
        and logged) rather than exported with a credential in it."""
        from rotel_sdk.open_telemetry.common import v1 as sdk

        from ...pipeline.core import UnsafeBatch

        try:
            request, scopes, records = to_request(signal, batch)
        except Exception:  # noqa: BLE001 - an exception escaping would abort Rotel
            return self._drop(signal, batch, "could not be read")
        try:
            # the batch contract, on the request Rotel's objects make (pipeline.core)
            processed = self.core.process_request(signal, request, serialize=False)
        except UnsafeBatch:
            return self._drop(signal, batch, "could not be masked")
        except Exception:  # noqa: BLE001 - an exception escaping would abort Rotel
            return self._drop(signal, batch, "could not be processed")
        if processed.fell_back:
            self.errors += 1
        events = processed.result.events
        try:
            write_back(sdk, signal, batch, request, scopes, records)
        except Exception:  # noqa: BLE001
            return self._drop(signal, batch, "could not be written back")
        self._queue_events(events)

    def _drop(self, signal: str, batch, why: str) -> None:
        self.errors += 1
        self.dropped_batches += 1
        log.exception("%s batch %s; it is emptied rather than exported unmasked", signal, why)
        try:
            setattr(batch, {"traces": "scope_spans", "logs": "scope_logs"}.get(signal, "scope_metrics"), [])
        except Exception:  # noqa: BLE001
            log.error("%s batch could not be emptied either", signal)

    def _queue_events(self, events) -> None:
        events = self.gate.admit(events)
        if not events:
            return
        try:
            self._events.put_nowait(self.gate.request(events))
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
            self._events.task_done()

    def flush(self, timeout_s: float) -> bool:
        """Waits until every queued event batch was exported, at most ``timeout_s`` (at exit:
        the exporting thread is a daemon, so what it has not sent yet would be lost)."""
        deadline = time.monotonic() + timeout_s
        while self._events.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._events.unfinished_tasks:
            log.error("%d convergence event batches not exported at shutdown", self._events.unfinished_tasks)
            return False
        return True

    def _snapshots(self) -> None:
        while True:
            time.sleep(self.config.snapshot_interval_s)
            try:
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


def check_supported(config) -> None:
    """What Rotel 0.0.1a15's receivers cannot do is refused, not silently left undone."""
    svc = config.service
    if svc.tls.enabled or svc.auth.bearer_tokens_file:
        raise ConfigError("Rotel's receivers take neither TLS nor bearer tokens: put `nhi-processor serve` "
                          "at the edge, or Rotel behind a proxy that terminates them", "service.tls/service.auth")


def rotel_command(config) -> list[str]:
    svc = config.service
    url, protocol = _otlp_url(svc.forward_target.endpoint)
    cmd = [rotel_binary(), "start", "--exporter", "otlp", "--otlp-exporter-endpoint", url,
           "--otlp-exporter-protocol", protocol,
           "--otlp-with-trace-processor", os.path.join(PROCESSOR_DIR, "traces.py"),
           "--otlp-with-logs-processor", os.path.join(PROCESSOR_DIR, "logs.py"),
           "--otlp-with-metrics-processor", os.path.join(PROCESSOR_DIR, "metrics.py")]
    tls = svc.forward_target.tls
    for flag, path in (("--otlp-exporter-tls-ca-file", tls.ca_file), ("--otlp-exporter-tls-cert-file", tls.cert_file),
                       ("--otlp-exporter-tls-key-file", tls.key_file)):
        if path:
            cmd += [flag, path]
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
    # A JSON null read through Rotel's SDK panics by design (convert.value_of catches it); a
    # backtrace per null value would flood the log and, on a pipe nobody reads, stall Rotel.
    env["RUST_BACKTRACE"] = "0"
    env[ENV_CONFIG] = json.dumps(dataclasses.asdict(config))
    headers = config.service.forward_target.resolved_headers()
    if headers:  # in the environment, not on the command line that any local user can list
        env["ROTEL_OTLP_EXPORTER_CUSTOM_HEADERS"] = ",".join(f"{k}={v}" for k, v in headers.items())
    return env


# The two lines Rust prints for each panic ``convert.value_of`` catches (a null value read).
_NULL_PANIC = ("panicked at rotel_python_processor_sdk/src/py/common.rs", "called `Option::unwrap()` on a `None` value",
               "note: run with `RUST_BACKTRACE=1`")


def forward_output(stream, out) -> int:
    """Copies Rotel's stderr to ``out`` without the lines of the null-value panics that
    ``convert.value_of`` catches (counted, reported once at the end). Returns their number."""
    nulls = 0
    for line in stream:
        if any(marker in line for marker in _NULL_PANIC):
            nulls += "panicked at" in line
            continue
        out.write(line)
        out.flush()
    if nulls:
        out.write(f"nhi-processor: {nulls} null values read through Rotel's SDK (read as null)\n")
    return nulls


def run_cli(args, config) -> int:
    """Start Rotel with the processor wired in; forward SIGTERM/SIGINT; exit with its code."""
    check_supported(config)
    proc = subprocess.Popen(rotel_command(config), env=rotel_environment(config), stderr=subprocess.PIPE,
                            text=True, errors="replace")
    relay = threading.Thread(target=forward_output, args=(proc.stderr, sys.stderr), name="rotel-stderr", daemon=True)
    relay.start()

    def forward(signum, _frame):
        proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):  # before the line a supervisor may act on
        signal.signal(sig, forward)
    print(f"nhi-processor: Rotel (pid {proc.pid}) listening on {config.service.listen_grpc} (gRPC) / "
          f"{config.service.listen_http} (HTTP); forwarding to {config.service.forward_target.describe()}; "
          f"events to {config.events_target.describe()}", flush=True)
    code = proc.wait()
    relay.join(timeout=5)
    return code
