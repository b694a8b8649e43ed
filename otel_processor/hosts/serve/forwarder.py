"""Downstream OTLP export: ``host:port`` is OTLP/gRPC, ``http(s)://...`` is OTLP/HTTP protobuf.

A failure of any kind raises ``ForwardError``; the host turns it into a retryable answer
upstream, so the sender's own queue and retry keep the data (DESIGN.md decision 2).
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

SIGNAL_PATHS = {"traces": "/v1/traces", "logs": "/v1/logs", "metrics": "/v1/metrics"}


class ForwardError(Exception):
    """Downstream did not accept a batch. ``retryable`` is False only for a permanent refusal."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


_PERMANENT_GRPC = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED,
                   grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


class GrpcForwarder:
    def __init__(self, endpoint: str, timeout_s: float):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(
            endpoint, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        self._stubs = {
            "traces": trace_service_pb2_grpc.TraceServiceStub(self._channel).Export,
            "logs": logs_service_pb2_grpc.LogsServiceStub(self._channel).Export,
            "metrics": metrics_service_pb2_grpc.MetricsServiceStub(self._channel).Export,
        }

    def export(self, signal: str, request) -> None:
        try:
            self._stubs[signal](request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            raise ForwardError(f"downstream {self.endpoint} answered {code.name if code else exc}",
                               retryable=code not in _PERMANENT_GRPC) from None

    def close(self) -> None:
        self._channel.close()


class HttpForwarder:
    """OTLP/HTTP with binary protobuf; one keep-alive connection per calling thread."""

    def __init__(self, endpoint: str, timeout_s: float):
        self.endpoint = endpoint.rstrip("/")
        self.timeout_s = timeout_s
        parsed = urllib.parse.urlsplit(self.endpoint)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or (443 if self._https else 80)
        self._base = parsed.path
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout_s)
            self._local.conn = conn
        return conn

    def export(self, signal: str, request) -> None:
        body = request.SerializeToString()
        path = self._base + SIGNAL_PATHS[signal]
        for attempt in (0, 1):  # one reconnect if a kept-alive connection went stale
            conn = self._connection()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/x-protobuf"})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 0:
                    continue
                raise ForwardError(f"downstream {self.endpoint} unreachable: {exc}") from None
            if 200 <= response.status < 300:
                return
            retryable = response.status in (429, 502, 503, 504)
            raise ForwardError(f"downstream {self.endpoint} answered HTTP {response.status}", retryable)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def make_forwarder(endpoint: str, timeout_s: float):
    if endpoint.startswith(("http://", "https://")):
        return HttpForwarder(endpoint, timeout_s)
    return GrpcForwarder(endpoint, timeout_s)
