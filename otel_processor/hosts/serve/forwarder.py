"""Downstream OTLP export: ``host:port`` is OTLP/gRPC, ``http(s)://...`` is OTLP/HTTP protobuf.

Each export's outcome is one of: accepted; ``ForwardError`` RETRY (downstream down, slow,
overloaded, or refusing our own credentials: the sender's queue keeps the data, and the outage
is an operator's to fix); PERMANENT (downstream says the data itself is wrong: retrying cannot
help, so the sender is told so); TOO_LARGE (the batch is over the downstream's size limit: the
service splits it). An export slower than the timeout is not cancelled: ``ForwardError.pending``
is a future that completes when downstream answers, so that the sender's retry of a batch that
was delivered after all is not sent twice. An accepted export may still say that downstream
dropped part of it (OTLP's ``partial_success``): ``export`` returns that as a ``Partial``, which
the service passes on to the sender.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass

from google.protobuf.message import DecodeError

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ...config import ExportConfig

SIGNAL_PATHS = {"traces": "/v1/traces", "logs": "/v1/logs", "metrics": "/v1/metrics"}
GRPC_METHODS = {"traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"}


def _wire_bytes(request) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()
RETRY, PERMANENT, TOO_LARGE = "retry", "permanent", "too_large"
# An export that outlives forward_timeout_s may still complete within this long.
LATE_DEADLINE_S = 120.0
MAX_SEND_BYTES = 64 * 1024 * 1024


# Each signal's response message and the field of its partial_success counting rejected records.
RESPONSES = {"traces": (trace_service_pb2.ExportTraceServiceResponse, "rejected_spans"),
             "logs": (logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records"),
             "metrics": (metrics_service_pb2.ExportMetricsServiceResponse, "rejected_data_points")}
MAX_MESSAGE = 512


@dataclass
class Partial:
    """Downstream accepted the export but says it dropped ``rejected`` records (and why)."""

    rejected: int
    message: str

    def add(self, other: "Partial | None") -> "Partial":
        if other is None:
            return self
        message = self.message if other.message in self.message else f"{self.message}; {other.message}"
        return Partial(self.rejected + other.rejected, message[:MAX_MESSAGE])


def partial_of(signal: str, response) -> Partial | None:
    """The ``partial_success`` of a response message, when it says anything."""
    if response is None or not response.HasField("partial_success"):
        return None
    part = response.partial_success
    rejected = int(getattr(part, RESPONSES[signal][1]))
    if rejected <= 0 and not part.error_message:
        return None
    return Partial(max(0, rejected), part.error_message[:MAX_MESSAGE])


def partial_of_http(signal: str, content_type: str, body: bytes) -> Partial | None:
    """An OTLP/HTTP success body: the response message in protobuf or JSON (camelCase keys)."""
    if not body:
        return None
    response_cls, field_name = RESPONSES[signal]
    try:
        if "json" in (content_type or ""):
            part = json.loads(body).get("partialSuccess") or {}
            camel = field_name.split("_")[0] + "".join(w.title() for w in field_name.split("_")[1:])
            rejected = int(part.get(camel) or 0)
            message = str(part.get("errorMessage") or "")
            return Partial(max(0, rejected), message[:MAX_MESSAGE]) if rejected > 0 or message else None
        return partial_of(signal, response_cls.FromString(body))
    except (ValueError, TypeError, AttributeError, DecodeError, RecursionError):
        return None  # an answer we cannot read says nothing we could pass on


class ForwardError(Exception):
    """Downstream did not accept a batch (``kind``: RETRY, PERMANENT or TOO_LARGE)."""

    def __init__(self, message: str, kind: str = RETRY, pending: concurrent.futures.Future | None = None):
        super().__init__(message)
        self.kind = kind
        self.pending = pending  # a slow export still under way: resolves to True once accepted

    @property
    def retryable(self) -> bool:
        return self.kind != PERMANENT


# The data is wrong: no retry can succeed.
_PERMANENT_GRPC = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                   grpc.StatusCode.ALREADY_EXISTS}
# Our own credentials or address are wrong: retryable, so that nothing is lost while it is fixed.
_OUR_CONFIG_GRPC = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND}


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def grpc_classify(code: grpc.StatusCode | None, details: str) -> str:
    if code in _PERMANENT_GRPC:
        return PERMANENT
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (details or "").lower():
        return TOO_LARGE
    return RETRY


class GrpcForwarder:
    def __init__(self, target: ExportConfig, timeout_s: float):
        self.target = target
        self.endpoint = target.endpoint
        self.timeout_s = timeout_s
        options = [("grpc.max_send_message_length", MAX_SEND_BYTES)]
        if target.uses_tls:
            t = target.tls
            credentials = grpc.ssl_channel_credentials(root_certificates=_read(t.ca_file),
                                                       private_key=_read(t.key_file),
                                                       certificate_chain=_read(t.cert_file))
            self._channel = grpc.secure_channel(self.endpoint, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(self.endpoint, options=options)
        self._metadata = tuple(target.resolved_headers().items()) or None
        # Requests go as the bytes the core gave (or a message, serialized here).
        self._stubs = {signal: self._channel.unary_unary(path, request_serializer=_wire_bytes,
                                                          response_deserializer=RESPONSES[signal][0].FromString)
                       for signal, path in GRPC_METHODS.items()}

    def export(self, signal: str, request) -> Partial | None:
        call = self._stubs[signal].future(request, timeout=LATE_DEADLINE_S, metadata=self._metadata)
        try:
            return partial_of(signal, call.result(timeout=self.timeout_s))
        except grpc.FutureTimeoutError:
            raise ForwardError(f"downstream {self.endpoint} did not answer within {self.timeout_s:g} s",
                               RETRY, _outcome_of(call)) from None
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else ""
            kind = grpc_classify(code, details)
            note = " (our credentials or address for it are wrong)" if code in _OUR_CONFIG_GRPC else ""
            raise ForwardError(f"downstream {self.endpoint} answered {code.name if code else exc}{note}: "
                               f"{(details or '')[:200]}", kind) from None

    def close(self) -> None:
        self._channel.close()


def _outcome_of(call) -> concurrent.futures.Future:
    """A future that turns True when a still-running gRPC call is accepted, False otherwise."""
    outcome: concurrent.futures.Future = concurrent.futures.Future()

    def done(c) -> None:
        try:
            c.result()
            outcome.set_result(True)
        except Exception:  # noqa: BLE001 - any failure means not delivered
            outcome.set_result(False)

    call.add_done_callback(done)
    return outcome


class HttpForwarder:
    """OTLP/HTTP with binary protobuf; one keep-alive connection per calling thread."""

    def __init__(self, target: ExportConfig, timeout_s: float):
        self.target = target
        self.endpoint = target.endpoint.rstrip("/")
        self.timeout_s = timeout_s
        parsed = urllib.parse.urlsplit(self.endpoint)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or (443 if self._https else 80)
        self._base = parsed.path
        self._headers = {"Content-Type": "application/x-protobuf", **target.resolved_headers()}
        self._context = None
        if self._https:
            t = target.tls
            self._context = ssl.create_default_context(cafile=t.ca_file)
            if t.cert_file:
                self._context.load_cert_chain(t.cert_file, t.key_file)
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout_s,
                                                   context=self._context)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
            self._local.conn = conn
        return conn

    def export(self, signal: str, request) -> Partial | None:
        body = _wire_bytes(request)
        path = self._base + SIGNAL_PATHS[signal]
        for attempt in (0, 1):  # one reconnect if a kept-alive connection went stale
            conn = self._connection()
            try:
                conn.request("POST", path, body=body, headers=self._headers)
                response = conn.getresponse()
                answer = response.read(1 << 20)
                if not response.isclosed():  # an answer too long to be OTLP's: not kept alive
                    conn.close()
                    self._local.conn = None
                text = answer[:200]
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 0 and not isinstance(exc, TimeoutError):
                    continue
                raise ForwardError(f"downstream {self.endpoint} unreachable: {exc}") from None
            status = response.status
            if 200 <= status < 300:
                return partial_of_http(signal, response.getheader("Content-Type", ""), answer)
            if status == 413:
                kind = TOO_LARGE
            elif status == 400 or (400 <= status < 500 and status not in (401, 403, 404, 405, 408, 429)):
                kind = PERMANENT
            else:
                kind = RETRY
            raise ForwardError(f"downstream {self.endpoint} answered HTTP {status}: {text!r}", kind)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def make_forwarder(target: ExportConfig, timeout_s: float):
    if target.is_http:
        return HttpForwarder(target, timeout_s)
    return GrpcForwarder(target, timeout_s)


def split(request):
    """Two requests holding the records of ``request`` between them, or None for a single record.

    Splits resource entries, else the scopes of the only entry, else the records of the only
    scope; resources and scopes are copied into both halves.
    """
    entries_field = request.DESCRIPTOR.fields[0].name
    entries = getattr(request, entries_field)
    if len(entries) > 1:
        half = len(entries) // 2
        return _with(request, entries_field, entries[:half]), _with(request, entries_field, entries[half:])
    if not entries:
        return None
    entry = entries[0]
    scopes_field = next(fd.name for fd in entry.DESCRIPTOR.fields if fd.name.startswith("scope_"))
    scopes = getattr(entry, scopes_field)
    if len(scopes) > 1:
        half = len(scopes) // 2
        return (_with(request, entries_field, [_with(entry, scopes_field, scopes[:half])]),
                _with(request, entries_field, [_with(entry, scopes_field, scopes[half:])]))
    if not scopes:
        return None
    scope = scopes[0]
    records_field = next(fd.name for fd in scope.DESCRIPTOR.fields if fd.name in ("spans", "log_records", "metrics"))
    records = getattr(scope, records_field)
    if len(records) < 2:
        return None
    half = len(records) // 2
    return tuple(_with(request, entries_field, [_with(entry, scopes_field, [_with(scope, records_field, part)])])
                 for part in (records[:half], records[half:]))


def _with(message, field_name: str, items):
    """A copy of ``message`` whose repeated ``field_name`` holds ``items``."""
    out = type(message)()
    for fd, value in message.ListFields():
        if fd.name == field_name:
            continue
        if fd.is_repeated:
            getattr(out, fd.name).extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            getattr(out, fd.name).CopyFrom(value)
        else:
            setattr(out, fd.name, value)
    getattr(out, field_name).extend(items)
    return out
