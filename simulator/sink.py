"""An OTLP/gRPC receiver standing in for "the second Collector pipeline".

It is the downstream in tests, the bench's collector of convergence events and forwarded
telemetry, and, as ``nhi-sim sink``, what a new user points ``nhi-processor serve`` at to see
events arrive. It keeps what it is sent (``keep=True``) or only counts it, calls ``on_request``
for every request, and can be told to refuse requests (UNAVAILABLE) to play a downstream outage.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

CONVERGENCE_EVENT_NAME = "nhi.convergence"


@dataclass
class SinkContents:
    traces: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    logs: list[logs_service_pb2.ExportLogsServiceRequest] = field(default_factory=list)
    metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)


# What the HTTP side answers for a refusal, per gRPC code (OTLP/HTTP specification).
_HTTP_STATUS = {grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.INVALID_ARGUMENT: 400,
                grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNAUTHENTICATED: 401,
                grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.INTERNAL: 500}
_HTTP_ROUTES = {"/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest),
                "/v1/logs": ("logs", logs_service_pb2.ExportLogsServiceRequest),
                "/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest)}


class OtlpSink:
    """Start with ``OtlpSink().start()``; ``endpoint`` is then ``127.0.0.1:<port>`` (OTLP/gRPC).

    With ``http=True`` it also accepts OTLP/HTTP protobuf at ``http_endpoint``. ``refuse`` plays a
    downstream that says no: True answers UNAVAILABLE (503 over HTTP), a ``grpc.StatusCode``
    answers that code (and its HTTP status).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_workers: int = 8, keep: bool = True,
                 on_request=None, http: bool = False, max_receive_bytes: int = 64 * 1024 * 1024):
        self._host = host
        self._port = port
        self._max_workers = max_workers
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.contents = SinkContents()
        self.keep = keep
        self.on_request = on_request  # called with (signal, request) for every accepted request
        self.refuse = False  # True plays an outage: every export gets UNAVAILABLE
        # (rejected, message): accepted exports answer a partial_success, as a backend over quota does
        self.partial: tuple[int, str] | None = None
        self.delay_s = 0.0   # plays a slow downstream: each export is answered this much later
        self.hold: threading.Event | None = None  # plays a stuck downstream: exports wait until it is set
        self.arrived = 0  # exports that reached the sink, answered or not yet
        self._max_receive = max_receive_bytes
        self.refused_requests = 0
        self._server: grpc.Server | None = None
        self.port = 0
        self._want_http = http
        self._http = None
        self.http_port = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "OtlpSink":
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers),
            options=[("grpc.max_receive_message_length", self._max_receive)],
        )
        sink = self

        class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 (gRPC name)
                sink._keep(context, "traces", request)
                return sink._response("traces")

        class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                sink._keep(context, "logs", request)
                return sink._response("logs")

        class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                sink._keep(context, "metrics", request)
                return sink._response("metrics")

        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(), server)
        self.port = server.add_insecure_port(f"{self._host}:{self._port}")
        if not self.port:
            raise OSError(f"cannot listen on {self._host}:{self._port}")
        server.start()
        self._server = server
        if self._want_http:
            self._start_http()
        return self

    def _start_http(self) -> None:
        import http.server

        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                return

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                route = _HTTP_ROUTES.get(self.path)
                code = sink._refusal()
                answer = b""
                if route is None:
                    status = 404
                elif code is not None:
                    status = _HTTP_STATUS.get(code, 500)
                else:
                    status = 200
                    sink._accept(route[0], route[1].FromString(body))
                    answer = sink._response(route[0]).SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._http = http.server.ThreadingHTTPServer((self._host, 0), Handler)
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True, name="sink-http").start()

    @property
    def http_endpoint(self) -> str:
        return f"http://{self._host}:{self.http_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=1).wait()
            self._server = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> "OtlpSink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"{self._host}:{self.port}"

    # -- receiving ---------------------------------------------------------------------------
    def _refusal(self) -> grpc.StatusCode | None:
        refuse = self.refuse
        if not refuse:
            return None
        with self._lock:
            self.refused_requests += 1
        return grpc.StatusCode.UNAVAILABLE if refuse is True else refuse

    def _keep(self, context, signal: str, request) -> None:
        with self._changed:
            self.arrived += 1
            self._changed.notify_all()
        if self.hold is not None:
            self.hold.wait(60)
        if self.delay_s:
            import time

            time.sleep(self.delay_s)
        code = self._refusal()
        if code is not None:
            context.abort(code, f"sink refuses ({code.name}, simulated)")
        self._accept(signal, request)

    def _response(self, signal: str):
        """The export's answer; with ``partial`` = (rejected, message), a partial success."""
        from otel_processor.hosts.serve.forwarder import Partial
        from otel_processor.hosts.serve.grpc_receiver import response_with

        return response_with(signal, Partial(*self.partial) if self.partial is not None else None)

    def _accept(self, signal: str, request) -> None:
        if self.on_request is not None:
            self.on_request(signal, request)
        with self._changed:
            if self.keep:
                getattr(self.contents, signal).append(request)
            self._changed.notify_all()

    # -- reading -----------------------------------------------------------------------------
    def spans(self) -> list[tuple[trace_pb2.ResourceSpans, trace_pb2.Span]]:
        with self._lock:
            requests = list(self.contents.traces)
        return [(rs, span) for req in requests for rs in req.resource_spans
                for ss in rs.scope_spans for span in ss.spans]

    def log_records(self) -> list[tuple[logs_pb2.ResourceLogs, logs_pb2.LogRecord]]:
        with self._lock:
            requests = list(self.contents.logs)
        return [(rl, rec) for req in requests for rl in req.resource_logs
                for sl in rl.scope_logs for rec in sl.log_records]

    def convergence_events(self) -> list[logs_pb2.LogRecord]:
        return [rec for _, rec in self.log_records() if rec.event_name == CONVERGENCE_EVENT_NAME]

    def telemetry_log_records(self) -> list[logs_pb2.LogRecord]:
        """Forwarded log records, convergence events excluded."""
        return [rec for _, rec in self.log_records() if rec.event_name != CONVERGENCE_EVENT_NAME]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` is true or the timeout passes."""
        import time

        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.2))
        return True
