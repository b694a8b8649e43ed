"""The standalone host: an OTLP service between two collector pipelines.

``Service(config).start()`` binds the OTLP/gRPC and OTLP/HTTP receivers; every batch is masked
and processed in place by the ``BatchProcessor``, the convergence events it decided are exported,
then the batch is forwarded, and only when downstream accepted it is the sender answered OK.

What the sender hears (docs/operations.md, the nothing-lost table):
- downstream down, slow, overloaded or refusing our credentials: ``Unavailable`` (gRPC
  UNAVAILABLE with RetryInfo, HTTP 503 with Retry-After), so that the sender's queue keeps the
  data; the outage is logged when it starts, every minute while it lasts, and when it ends;
- downstream says the data is wrong: ``Rejected`` (INVALID_ARGUMENT / 400), logged and counted;
- a batch over the downstream's size limit is split in halves until each part fits;
- a retry of a refused batch is recognised (``retries.py``): not learnt from twice, not sent
  twice when a slow export got through after all.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import deque

from ...config import ProcessorConfig
from ...engine import Engine
from ...engine.state import StateError
from ...errors import ConfigError
from ...identity.catalog import load_catalog
from ...pipeline import BatchProcessor, BatchResult
from ...pipeline.core import MalformedRequest, Processed, ReferenceCore, UnsafeBatch
from ...pipeline.core import count_records
from ..event_gate import EventGate
from .admin import start_admin_server
from .admission import FairGate, MemoryBudget, Overloaded, count_records as count_on_wire, estimate, parts
from .answers import Rejected, Unavailable
from .auth import BearerTokens, warn_if_exposed
from .forwarder import PERMANENT, TOO_LARGE, ForwardError, Partial, make_forwarder, split
from .grpc_receiver import start_grpc_server
from .http_server import start_http_server
from .metrics import ProcessorMetrics
from .outages import OutageLog
from .retries import DELIVERED, FAILED, PENDING, RetryMemory, digest

log = logging.getLogger(__name__)

STATE_FILE = "engine-state.json.gz"
_FIELDS = {"traces": ("resource_spans", "scope_spans", "spans"),
           "logs": ("resource_logs", "scope_logs", "log_records")}
MAX_PENDING_EVENTS = 10_000
MAX_SPLIT_DEPTH = 16
# Back-off of the downstream probe while it is down: under the shipped readiness probe's 5 s.
PROBE_MIN_S = 0.5
PROBE_MAX_S = 4.0


def state_path(config: ProcessorConfig) -> str | None:
    return os.path.join(config.state_dir, STATE_FILE) if config.state_dir else None


def check_state_dir(config: ProcessorConfig) -> None:
    """Start-up check: the state directory exists (or can be made) and is writable."""
    directory = config.state_dir
    if not directory:
        return
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ConfigError(f"state_dir {directory!r} is a file, not a directory", "state_dir")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"state_dir {directory!r} cannot be created: {exc.strerror}", "state_dir") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"state_dir {directory!r} is not writable by this user", "state_dir")


def reset_state(config: ProcessorConfig) -> str | None:
    """Moves an existing snapshot aside (``<file>.reset-<time>``); returns where, or None."""
    path = state_path(config)
    if not path or not os.path.exists(path):
        return None
    aside = f"{path}.reset-{time.strftime('%Y%m%dT%H%M%S')}"
    shutil.move(path, aside)
    return aside


class Service:
    def __init__(self, config: ProcessorConfig | None = None, processor: BatchProcessor | None = None):
        self.config = config or ProcessorConfig()
        if processor is None:
            catalog = load_catalog(self.config.catalog) if self.config.catalog else None
            engine = Engine(self.config.engine, catalog=catalog)
            processor = BatchProcessor(self.config, engine=engine, catalog=catalog)
        self.processor = processor
        self.core = ReferenceCore(processor)  # the batch contract: bytes in, bytes and events out
        self.engine = processor.engine
        self.metrics = ProcessorMetrics(
            self.config,
            identities=lambda: self.engine.identities_tracked,
            evictions=lambda: self.engine.evictions_by_tier,
        )
        svc = self.config.service
        self.tokens = BearerTokens(svc.auth.bearer_tokens_file)
        self.admin_tokens = BearerTokens(svc.auth.admin_bearer_tokens_file)
        forward = svc.forward_target
        self.forwarder = make_forwarder(forward, svc.forward_timeout_s)
        events = self.config.events_target
        self.events_forwarder = (self.forwarder if events == forward
                                 else make_forwarder(events, svc.forward_timeout_s))
        self.gate = EventGate(self.config, lambda exception, n: self.metrics.events_suppressed.add(
            n, {"exception": exception}))
        self._outage = OutageLog(f"downstream {forward.endpoint}")
        self._retries = RetryMemory()
        self._slots = threading.BoundedSemaphore(svc.max_concurrent_batches)
        self.budget = MemoryBudget(svc.memory_limit_mib << 20)
        self._gate = FairGate()
        self._pending_events: deque = deque(maxlen=MAX_PENDING_EVENTS)
        self._events_lock = threading.Lock()
        self._partial_logged = float("-inf")
        self._vendor_logged = -60.0  # when skipped vendor records were last logged (monotonic)
        self._grpc = None
        self._http = None
        self._admin = None
        self.grpc_health = None  # grpc.health.v1 servicer, set by the gRPC receiver
        self.admin_port: int | None = None
        self._started = False
        self._stopping = threading.Event()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._snapshotter: threading.Thread | None = None
        self._snapshot_lock = threading.Lock()
        self.grpc_port: int | None = None
        self.http_port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Service":
        check_state_dir(self.config)
        self._restore_state()
        svc = self.config.service
        warn_if_exposed(svc, self.tokens)
        try:
            if svc.listen_grpc:
                self._grpc, self.grpc_port = start_grpc_server(self, svc.listen_grpc)
            if svc.listen_http:
                self._http, self.http_port = start_http_server(self, svc.listen_http)
            if svc.listen_admin:
                self._admin, self.admin_port = start_admin_server(self, svc.listen_admin)
        except BaseException:
            self._close_listeners()
            raise
        if self.config.state_dir:
            self._snapshotter = threading.Thread(target=self._snapshot_loop, name="nhi-snapshot", daemon=True)
            self._snapshotter.start()
        self._watcher = threading.Thread(target=self._watch_downstream, name="nhi-downstream", daemon=True)
        self._watcher.start()
        self._started = True
        return self

    def _watch_downstream(self) -> None:
        """While downstream is marked down, an empty export on a back-off (0.5 s doubling to
        PROBE_MAX_S): when it is accepted the outage ends and the service is ready again, with no
        traffic needed (an unready pod behind a Service gets none)."""
        wait = PROBE_MIN_S
        while not self._stopping.wait(wait if self._outage.down else PROBE_MIN_S):
            if not self._outage.down:
                wait = PROBE_MIN_S
                continue
            try:
                self.forwarder.export("logs", b"")  # an empty ExportLogsServiceRequest
            except ForwardError:
                wait = min(PROBE_MAX_S, wait * 2)
                continue
            except Exception:  # noqa: BLE001 - a probe never takes the service down
                log.debug("downstream probe failed", exc_info=True)
                wait = min(PROBE_MAX_S, wait * 2)
                continue
            self._outage.success()
            wait = PROBE_MIN_S

    def readiness(self) -> tuple[bool, str]:
        """Whether to send this instance traffic, and why not."""
        if self._stopping.is_set():
            return False, "shutting down"
        if not self._started:
            return False, "starting"
        if self._outage.down:
            return False, f"{self._outage.name} unavailable"
        return True, "ready"

    def reload(self) -> bool:
        """SIGHUP: catalog, rules and exceptions read anew. Each that is wrong keeps its old
        version (logged why); what the engine learnt stays. True when all three reloaded."""
        ok = self.gate.reload()
        if self.config.catalog:
            try:
                catalog = load_catalog(self.config.catalog)
            except ConfigError as exc:
                log.error("catalog not reloaded, the previous one stays: %s", exc)
                ok = False
            else:
                self.processor.use_catalog(catalog)
                log.info("catalog reloaded from %s", self.config.catalog)
        try:
            self.engine.reload_rules()
        except ConfigError as exc:
            log.error("rules not reloaded, the previous ones stay: %s", exc)
            ok = False
        else:
            log.info("rules reloaded from %s", self.engine.rules.path)
        return ok

    def _close_listeners(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=0)
        if self._http is not None:
            self._http.close()
        self._close_admin()

    def _close_admin(self) -> None:
        if self._admin is not None:
            self._admin.shutdown()
            self._admin.server_close()
            self._admin = None

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight batches finish, flush events, snapshot state; within ``grace``."""
        grace = self.config.service.shutdown_grace_s if grace is None else grace
        deadline = time.monotonic() + grace
        self._stopping.set()
        if self.grpc_health is not None:
            self.grpc_health.enter_graceful_shutdown()
        if self._http is not None:
            self._http.stop_accepting()
        if self._grpc is not None:
            self._grpc.stop(grace=max(0.1, grace * 0.4)).wait()
        while self._in_flight and time.monotonic() < deadline - grace * 0.4:
            time.sleep(0.02)
        if self._http is not None:
            self._http.close()
        self._flush_events()
        self._save_state(deadline=deadline - 0.2, final=True)
        self._close_admin()
        self.metrics.shutdown()
        self.forwarder.close()
        if self.events_forwarder is not self.forwarder:
            self.events_forwarder.close()

    def __enter__(self) -> "Service":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(grace=2.0)

    # -- the one path every receiver calls ---------------------------------------------------
    def handle(self, signal: str, data: bytes, records: int | None = None) -> Partial | None:
        """Process and forward one batch: the request's protobuf wire bytes, through the batch
        contract (``pipeline.core``), forwarded as the bytes it gives back. ``records``: the
        count admission made off the wire. Returns what downstream said it dropped of an
        accepted batch (its ``partial_success``), for the receiver to pass on to the sender.

        Raises Unavailable (retry later) or Rejected (never retry: not OTLP, or not safe)."""
        if self._stopping.is_set():
            raise Unavailable("processor is shutting down")
        if not self._slots.acquire(timeout=self.config.service.forward_timeout_s):
            raise Unavailable("processor is at its concurrent-batch limit")
        started = time.perf_counter()
        attrs = {"signal": signal}
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            n = records if records is not None and signal != "metrics" else self._count(signal, data)
            self.metrics.records_in.add(n, attrs)
            key = None
            learn = True
            if self._retries.active:
                key = digest(data)
                seen = self._retries.lookup(key, self.config.service.forward_timeout_s)
                if seen == DELIVERED:  # a slow export got through after all: do not send it twice
                    self._retries.forget(key)
                    self.metrics.retries_recognised.add(n, {**attrs, "outcome": "already_delivered"})
                    return None
                if seen == PENDING:
                    raise Unavailable("the first attempt of this batch is still being delivered")
                if seen == FAILED:
                    learn = False
                    self.metrics.retries_recognised.add(n, {**attrs, "outcome": "not_learnt_twice"})
            result, out = self._process_in_parts(signal, data, learn, n)
            if result.events:
                self._send_events(result.events)
            try:
                partial = self._forward(signal, out, 0)
            except ForwardError as exc:
                key = key or digest(data)
                return self._forward_failed(signal, exc, key, n)
            self._outage.success()
            if key is not None:
                self._retries.forget(key)
            self.metrics.records_out.add(n, attrs)
            self.metrics.batches.add(1, attrs)
            if partial is not None:
                self._partial_said(signal, partial)
            return partial
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
            self._slots.release()
            self.metrics.latency.record(time.perf_counter() - started, attrs)

    def _count(self, signal: str, data: bytes) -> int:
        """Records as the metrics count them: spans, log records, and metric data points (the
        wire count admission makes stops at the Metric messages)."""
        if signal != "metrics":
            return count_on_wire(data, 1 << 62)
        try:
            return count_records(signal, self.core.parse(signal, data))
        except MalformedRequest:
            return 0  # the core says what is wrong with it

    def delivered_after_the_senders_deadline(self, data: bytes) -> None:
        """The sender stopped waiting before this batch was delivered and will send it again:
        its retry is then acknowledged without being processed or forwarded a second time."""
        self._retries.remember(digest(data), DELIVERED)
        self.metrics.late_answers.add(1)

    def _partial_said(self, signal: str, partial: Partial) -> None:
        self.metrics.downstream_partial.add(partial.rejected, {"signal": signal})
        now = time.monotonic()
        with self._events_lock:
            due = now - self._partial_logged >= 60.0
            if due:
                self._partial_logged = now
        if due:
            log.warning("downstream accepted a %s batch but dropped %d of its records (%s); the sender is "
                        "told the same (said at most once a minute; nhi_processor_downstream_partial counts all)",
                        signal, partial.rejected, partial.message or "no reason given")

    def _forward(self, signal: str, request, depth: int) -> Partial | None:
        """``request``: wire bytes, or (halves of a split) a message."""
        try:
            return self.forwarder.export(signal, request)
        except ForwardError as exc:
            if exc.kind != TOO_LARGE:
                raise
            if isinstance(request, bytes):
                request = self.core.parse(signal, request)
            halves = split(request) if depth < MAX_SPLIT_DEPTH else None
            if halves is None:
                raise ForwardError(f"a single record is over the downstream's size limit ({exc})", PERMANENT) from None
            self.metrics.splits.add(1, {"signal": signal})
            partial = None
            for half in halves:
                said = self._forward(signal, half, depth + 1)
                partial = said.add(partial) if said is not None else partial
            return partial

    def _forward_failed(self, signal: str, exc: ForwardError, key: bytes, n: int):
        attrs = {"signal": signal}
        if exc.kind == PERMANENT:
            self.metrics.downstream_rejected.add(n, attrs)
            log.error("downstream refused a %s batch of %d records permanently; the sender is told not to "
                      "retry it: %s", signal, n, exc)
            raise Rejected(f"downstream refused the batch: {exc}")
        self.metrics.downstream_failures.add(1, attrs)
        self._outage.failure(str(exc))
        self._retries.remember(key, PENDING if exc.pending is not None else FAILED, exc.pending)
        raise Unavailable(str(exc))

    def admit(self, signal: str, data: bytes, wire_bytes: int = 0) -> tuple[int, int]:
        """Before a request is parsed: its records counted off the wire (over the cap: Rejected)
        and what it will hold reserved from the memory budget (past it: Overloaded). Returns
        (bytes reserved, which the caller releases when the request is answered; records)."""
        svc = self.config.service
        records = count_on_wire(data, svc.max_records_per_request)
        if records > svc.max_records_per_request:
            self.metrics.refused.add(1, {"signal": signal, "reason": "records"})
            raise Rejected(f"the request holds more than {svc.max_records_per_request:,} records "
                           f"(service.max_records_per_request): send smaller batches "
                           f"(the Collector's send_batch_max_size)")
        need = estimate(len(data), records) + wire_bytes
        if not self.budget.reserve(need):
            self.metrics.refused.add(1, {"signal": signal, "reason": "memory"})
            raise Overloaded(f"the processor holds {self.budget.held >> 20} MiB of requests "
                             f"(service.memory_limit_mib {svc.memory_limit_mib}): retry later")
        return need, records

    def _process_in_parts(self, signal: str, data: bytes, learn: bool, n: int) -> tuple[BatchResult, bytes]:
        """A request over ``batch_part_records`` is processed in parts, each queued first come
        first served behind whoever waits; the parts' bytes, concatenated, are one request again."""
        size = self.config.service.batch_part_records
        if signal == "metrics" or n <= size:
            with self._gate:
                processed = self._process(signal, data, learn)
            return processed.result, processed.data
        try:
            request = self.core.parse(signal, data)
        except MalformedRequest as exc:
            self.malformed(signal)
            raise Rejected(str(exc)) from None
        entries, scopes, records = _FIELDS[signal]
        total, outs = BatchResult(), []
        for part in parts(request, entries, scopes, records, size):
            with self._gate:
                processed = self._process(signal, part.SerializeToString(), learn)
            outs.append(processed.data)
            result = processed.result
            total.records += result.records
            total.attributed += result.attributed
            total.unattributed += result.unattributed
            total.failed += result.failed
            total.events += result.events
            for key, value in result.vendor.items():
                total.vendor[key] = total.vendor.get(key, 0) + value
        return total, b"".join(outs)

    def _process(self, signal: str, data: bytes, learn: bool) -> Processed:
        """One batch through the batch contract, with what it counted said in metrics."""
        try:
            processed = self.core.process(signal, data, learn)
        except MalformedRequest as exc:
            self.malformed(signal)
            raise Rejected(str(exc)) from None
        except UnsafeBatch as exc:
            raise Rejected(str(exc)) from None
        result = processed.result
        if result.unattributed:
            self.metrics.unattributed.add(result.unattributed, {"signal": signal})
        if result.failed:
            self.metrics.record_errors.add(result.failed, {"signal": signal})
        for source, n in result.vendor.items():
            self.metrics.vendor.add(n, {"source": source, "outcome": "mapped"})
        if result.vendor_skipped:
            self._vendor_skipped(result.vendor_skipped)
        return processed

    def _vendor_skipped(self, skipped: dict[str, int]) -> None:
        """Counted per source (a reason holds the sender's text: never a metric attribute), and
        the reasons logged at most once a minute."""
        for key, n in skipped.items():
            self.metrics.vendor.add(n, {"source": key.split(":", 1)[0], "outcome": "skipped"})
        now = time.monotonic()
        if now - self._vendor_logged >= 60:
            self._vendor_logged = now
            log.info("vendor records forwarded unmapped: %s",
                     "; ".join(f"{key} ({n})" for key, n in sorted(skipped.items(), key=lambda kv: -kv[1])[:5]))

    def malformed(self, signal: str) -> None:
        self.metrics.malformed.add(1, {"signal": signal})

    # -- events --------------------------------------------------------------------------------
    def _send_events(self, events) -> None:
        events = self.gate.admit(events)
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
                self.events_forwarder.export("logs", self.gate.request(batch))
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
    def _restore_state(self) -> None:
        path = state_path(self.config)
        if path and os.path.exists(path):
            self.engine.restore_from(path)  # StateError: the CLI says it in one line, exit 2
            log.info("restored engine state from %s (%d identities)", path, self.engine.identities_tracked)

    def _save_state(self, deadline: float | None = None, final: bool = False) -> None:
        path = state_path(self.config)
        if not path:
            return
        with self._snapshot_lock:
            started = time.monotonic()
            try:
                done = self.engine.snapshot_to(path, deadline)
            except OSError as exc:
                log.error("state snapshot to %s failed: %s", path, exc)
                return
        if not done:
            log.error("state snapshot to %s did not finish within the %s; the previous snapshot stays",
                      path, "shutdown grace" if final else "time allowed")
        else:
            log.debug("state snapshot of %d identities written in %.1f s", self.engine.identities_tracked,
                      time.monotonic() - started)

    def _snapshot_loop(self) -> None:
        while not self._stopping.wait(self.config.snapshot_interval_s):
            self._save_state()


__all__ = ["Service", "StateError", "check_state_dir", "reset_state", "count_records"]
