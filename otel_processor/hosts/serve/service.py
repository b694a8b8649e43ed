"""The standalone host: an OTLP service between two collector pipelines.

``Service(config).start()`` binds the OTLP/gRPC and OTLP/HTTP receivers; every batch is
processed in place by the ``BatchProcessor``, the convergence events it decided are exported,
then the batch is forwarded, and only when downstream accepted it is the sender answered OK.
Downstream trouble becomes ``Unavailable`` (gRPC UNAVAILABLE with RetryInfo, HTTP 503 with
Retry-After) so that the sender's queue and retry keep the data.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

from ...config import ProcessorConfig
from ...engine import Engine
from ...identity.catalog import load_catalog
from ...outputs.events import events_request
from ...pipeline import BatchProcessor, BatchResult
from .answers import Unavailable
from .forwarder import ForwardError, make_forwarder
from .grpc_receiver import start_grpc_server
from .http_receiver import start_http_server
from .metrics import ProcessorMetrics

log = logging.getLogger(__name__)

STATE_FILE = "engine-state.json.gz"
MAX_PENDING_EVENTS = 10_000


def count_records(signal: str, request) -> int:
    if signal == "traces":
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if signal == "logs":
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                total += len(getattr(metric, kind).data_points) if kind else 0
    return total


class Service:
    def __init__(self, config: ProcessorConfig | None = None, processor: BatchProcessor | None = None):
        self.config = config or ProcessorConfig()
        if processor is None:
            catalog = load_catalog(self.config.catalog) if self.config.catalog else None
            engine = Engine(self.config.engine, catalog=catalog)
            processor = BatchProcessor(self.config, engine=engine, catalog=catalog)
        self.processor = processor
        self.engine = processor.engine
        self.metrics = ProcessorMetrics(
            self.config,
            identities=lambda: self.engine.identities_tracked,
            evictions=lambda: getattr(self.engine, "evictions", 0),
        )
        svc = self.config.service
        self.forwarder = make_forwarder(svc.forward, svc.forward_timeout_s)
        events_endpoint = self.config.events_endpoint
        self.events_forwarder = (self.forwarder if events_endpoint == svc.forward
                                 else make_forwarder(events_endpoint, svc.forward_timeout_s))
        self._slots = threading.BoundedSemaphore(svc.max_concurrent_batches)
        self._pending_events: deque = deque(maxlen=MAX_PENDING_EVENTS)
        self._events_lock = threading.Lock()
        self._grpc = None
        self._http = None
        self._stopping = threading.Event()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._snapshotter: threading.Thread | None = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Service":
        self._restore_state()
        svc = self.config.service
        if svc.listen_grpc:
            self._grpc, self.grpc_port = start_grpc_server(self, svc.listen_grpc)
        if svc.listen_http:
            self._http, self.http_port = start_http_server(self, svc.listen_http)
        if self.config.state_dir:
            self._snapshotter = threading.Thread(target=self._snapshot_loop, name="nhi-snapshot",
                                                 daemon=True)
            self._snapshotter.start()
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight batches finish, flush events, snapshot state."""
        grace = self.config.service.shutdown_grace_s if grace is None else grace
        self._stopping.set()
        deadline = time.monotonic() + grace
        if self._http is not None:
            self._http.stop_accepting()
        if self._grpc is not None:
            self._grpc.stop(grace=max(0.1, grace - 1.0)).wait()
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._http is not None:
            self._http.close()
        self._flush_events()
        self._save_state()
        self.metrics.shutdown()
        self.forwarder.close()
        if self.events_forwarder is not self.forwarder:
            self.events_forwarder.close()

    def __enter__(self) -> "Service":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(grace=2.0)

    # -- the one path every receiver calls ---------------------------------------------------
    def handle(self, signal: str, request) -> BatchResult | None:
        """Process and forward one batch; raise Unavailable when it must be retried."""
        if self._stopping.is_set():
            raise Unavailable("processor is shutting down")
        if not self._slots.acquire(timeout=self.config.service.forward_timeout_s):
            raise Unavailable("processor is at its concurrent-batch limit")
        started = time.perf_counter()
        attrs = {"signal": signal}
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            n = count_records(signal, request)
            self.metrics.records_in.add(n, attrs)
            result = None
            if signal in ("traces", "logs"):
                result = self._process(signal, request)
                self._send_events(result.events)
            try:
                self.forwarder.export(signal, request)
            except ForwardError as exc:
                self.metrics.downstream_failures.add(1, attrs)
                raise Unavailable(str(exc)) from None
            self.metrics.records_out.add(n, attrs)
            self.metrics.batches.add(1, attrs)
            return result
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
            self._slots.release()
            self.metrics.latency.record(time.perf_counter() - started, attrs)

    def _process(self, signal: str, request) -> BatchResult:
        try:
            if signal == "traces":
                result = self.processor.process_traces(request)
            else:
                result = self.processor.process_logs(request)
        except Exception:  # noqa: BLE001 - the batch still goes downstream, unchanged
            log.exception("batch processing failed; forwarding unchanged")
            self.metrics.record_errors.add(count_records(signal, request), {"signal": signal})
            return BatchResult()
        if result.unattributed:
            self.metrics.unattributed.add(result.unattributed, {"signal": signal})
        if result.failed:
            self.metrics.record_errors.add(result.failed, {"signal": signal})
        return result

    def malformed(self, signal: str) -> None:
        self.metrics.malformed.add(1, {"signal": signal})

    # -- events --------------------------------------------------------------------------------
    def _send_events(self, events) -> None:
        with self._events_lock:
            pending = self._pending_events
            overflow = len(pending) + len(events) - pending.maxlen
            if overflow > 0:  # the oldest held events give way; say so rather than lose them silently
                self.metrics.events_dropped.add(overflow)
                log.error("events endpoint unreachable for long: dropping the %d oldest undelivered "
                          "convergence events", overflow)
            pending.extend(events)
            if not pending:
                return
            batch = list(pending)
            try:
                self.events_forwarder.export("logs", events_request(batch, self.config.events.service_name))
            except ForwardError as exc:
                self.metrics.events_failed.add(len(batch))
                log.warning("could not export %d convergence events (%s); kept for the next batch",
                            len(batch), exc)
                return
            self._pending_events.clear()
            self.metrics.events.add(len(batch))

    def _flush_events(self) -> None:
        self._send_events([])

    # -- state ---------------------------------------------------------------------------------
    def _state_path(self) -> str | None:
        if not self.config.state_dir:
            return None
        return os.path.join(self.config.state_dir, STATE_FILE)

    def _restore_state(self) -> None:
        path = self._state_path()
        if path and os.path.exists(path):
            self.engine.restore_from(path)
            log.info("restored engine state from %s (%d identities)", path, self.engine.identities_tracked)

    def _save_state(self) -> None:
        path = self._state_path()
        if path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with self.processor._lock:
                self.engine.snapshot_to(path)

    def _snapshot_loop(self) -> None:
        while not self._stopping.wait(self.config.snapshot_interval_s):
            try:
                self._save_state()
            except OSError as exc:
                log.warning("state snapshot failed: %s", exc)
