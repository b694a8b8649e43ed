"""OTLP/HTTP receiver: ``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics``.

Binary protobuf and JSON as the OTLP specification defines them (JSON ids are hex, not base64;
gzip Content-Encoding). Answers: 200 with an Export*ServiceResponse in the request's encoding;
400 for a body that does not decode, with what was wrong; 413 for a body over the limit; 415 for
another content type; 503 with Retry-After when downstream cannot take the batch.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ...otlp_json import parse_json
from .answers import Unavailable

log = logging.getLogger(__name__)

ROUTES = {
    "/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest,
                   trace_service_pb2.ExportTraceServiceResponse),
    "/v1/logs": ("logs", logs_service_pb2.ExportLogsServiceRequest,
                 logs_service_pb2.ExportLogsServiceResponse),
    "/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest,
                    metrics_service_pb2.ExportMetricsServiceResponse),
}
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nhi-convergence"
    service = None  # set per server class

    def log_message(self, fmt, *args):  # request lines never go to the log (they may carry tokens)
        return

    def _reply(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, as_json: bool, extra: dict | None = None) -> None:
        # The OTLP spec answers errors with a google.rpc.Status.
        from google.rpc import status_pb2

        code = {400: 3, 413: 3, 415: 3, 503: 14, 404: 5}.get(status, 2)
        st = status_pb2.Status(code=code, message=message)
        if as_json:
            self._reply(status, json.dumps({"code": code, "message": message}).encode(), "application/json", extra)
        else:
            self._reply(status, st.SerializeToString(), "application/x-protobuf", extra)

    def do_POST(self):  # noqa: N802
        service = self.service
        path = self.path.split("?", 1)[0]
        route = ROUTES.get(path)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        as_json = content_type == "application/json"
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        limit = service.config.service.max_request_bytes
        if route is None:
            self._drain(length)
            return self._error(404, f"no OTLP route {path}; use /v1/traces, /v1/logs or /v1/metrics", as_json)
        signal, request_cls, response_cls = route
        if length < 0:
            service.malformed(signal)
            self.close_connection = True
            return self._error(400, "Content-Length is missing or invalid", as_json)
        if length > limit:
            service.malformed(signal)
            self.close_connection = True
            return self._error(413, f"body of {length} bytes is over the {limit}-byte limit", as_json)
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        try:
            if encoding == "gzip":
                body = _gunzip(body, limit)
            elif encoding not in ("", "identity"):
                raise ValueError(f"unsupported Content-Encoding {encoding!r}")
        except _TooLarge:
            service.malformed(signal)
            return self._error(413, f"decompressed body is over the {limit}-byte limit", as_json)
        except (ValueError, OSError, EOFError, zlib.error) as exc:
            service.malformed(signal)
            return self._error(400, f"body could not be decompressed: {exc}", as_json)
        if content_type not in ("application/x-protobuf", "application/json"):
            service.malformed(signal)
            return self._error(415, f"Content-Type {content_type!r}: use application/x-protobuf or "
                                    "application/json", as_json)
        try:
            request = parse_json(body, request_cls) if as_json else request_cls.FromString(body)
        except (DecodeError, ValueError, json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
            service.malformed(signal)
            kind = "JSON" if as_json else "protobuf"
            return self._error(400, f"body is not a valid OTLP {kind} {request_cls.__name__}: {exc}", as_json)
        try:
            service.handle(signal, request)
        except Unavailable as exc:
            retry = max(1, round(service.config.service.retry_after_s))
            return self._error(503, str(exc), as_json, {"Retry-After": str(retry)})
        response = response_cls()
        if as_json:
            self._reply(200, json.dumps(json_format.MessageToDict(response)).encode(), "application/json")
        else:
            self._reply(200, response.SerializeToString(), "application/x-protobuf")

    def _drain(self, length: int) -> None:
        if 0 < length <= 1 << 20:
            self.rfile.read(length)
        else:
            self.close_connection = True


class _TooLarge(Exception):
    pass


def _gunzip(body: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(body, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise _TooLarge()
    return out


class HttpReceiver:
    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name="nhi-http", daemon=True)

    def stop_accepting(self) -> None:
        self.server.shutdown()  # stops the accept loop; handler threads already running go on

    def close(self) -> None:
        self.server.server_close()


def start_http_server(service, listen: str) -> tuple[HttpReceiver, int]:
    host, _, port = listen.rpartition(":")
    handler = type("OtlpHttpHandler", (_Handler,), {"service": service})
    server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
    server.daemon_threads = True
    server.block_on_close = False
    receiver = HttpReceiver(server)
    receiver.thread.start()
    return receiver, server.server_address[1]
