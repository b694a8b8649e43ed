"""OTLP/HTTP receiver: ``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics``, on asyncio and h11.

HTTP/1.1 framing (Content-Length and chunked bodies, keep-alive, pipelining, malformed requests)
is h11's, a maintained, sans-I/O protocol library (the one under httpcore and uvicorn). This
module owns only what a processor in the data path must control and general servers do not
expose: a cap on connections (beyond it: 503 and close), a deadline for a request's headers, one
for its whole body, an idle timeout between requests, size limits on headers and on the body
before and after decompression, multi-member gzip, TLS with optional client certificates, bearer
tokens, and quiet handling of clients that vanish. Why not uvicorn or aiohttp: neither bounds
how long a client may take to send its headers or body, nor caps idle connections.

Answers: 200 with an Export*ServiceResponse in the request's encoding; 400 for a body that does
not decode, with what was wrong; 401 without a valid token; 404 for another path; 408 when a
deadline passed; 413 for a body over the limit; 415 for another content type; 503 with
Retry-After when downstream cannot take the batch or the connection cap is reached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import h11
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ...errors import ConfigError
from ...otlp_json import TooManyRecords, parse_json
from .admission import Overloaded
from .answers import Rejected, Unavailable
from .auth import http_ssl_context
from .grpc_receiver import response_with

log = logging.getLogger(__name__)

ROUTES = {
    "/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "/v1/logs": ("logs", logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
    "/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest,
                    metrics_service_pb2.ExportMetricsServiceResponse),
}
_CODES = {400: 3, 401: 16, 404: 5, 408: 4, 413: 3, 415: 3, 429: 8, 503: 14}
READ_CHUNK = 65_536


class _TooLarge(Exception):
    pass


def gunzip(body: bytes, limit: int) -> bytes:
    """Every member of a gzip body (RFC 1952 allows several), at most ``limit`` bytes out."""
    out = bytearray()
    while body:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += d.decompress(body, limit + 1 - len(out))
        if len(out) > limit or d.unconsumed_tail:
            raise _TooLarge()
        if not d.eof:
            raise ValueError("truncated gzip member")
        body = d.unused_data.lstrip(b"\0")  # padding between members is tolerated, as gzip(1) does
    return bytes(out)


class _Reply(Exception):
    def __init__(self, status: int, message: str, close: bool = False, headers: tuple = ()):
        super().__init__(message)
        self.status, self.message, self.close, self.headers = status, message, close, headers


class HttpServer:
    def __init__(self, service, listen: str):
        self.service = service
        svc = service.config.service
        self.limits = svc
        self.tokens = service.tokens
        self.ssl = http_ssl_context(svc)
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.connections = 0
        self._pool = ThreadPoolExecutor(max_workers=svc.max_concurrent_batches + 2, thread_name_prefix="nhi-http")
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="nhi-http", daemon=True)
        self._writers: set = set()

    def start(self) -> int:
        async def bind():
            return await asyncio.start_server(self._connection, self.host, self.port, ssl=self.ssl,
                                              ssl_handshake_timeout=self.limits.http_read_header_timeout_s if self.ssl
                                              else None, limit=READ_CHUNK, reuse_address=True)
        self._thread.start()
        try:
            self._server = asyncio.run_coroutine_threadsafe(bind(), self._loop).result()
        except OSError as exc:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}", "service.listen_http") from None
        return self._server.sockets[0].getsockname()[1]

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)

    def close(self) -> None:
        async def shut():
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one connection ------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limits = self.limits
        if self.connections >= limits.http_max_connections:
            self.service.metrics.http_refused.add(1, {"reason": "connection_cap"})
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            await self._close(writer)
            return
        self.connections += 1
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.http_max_header_bytes)
        try:
            first = True
            while True:
                timeout = limits.http_read_header_timeout_s if first else limits.http_idle_timeout_s
                try:
                    event = await self._next(conn, reader, timeout)
                except asyncio.TimeoutError:
                    if not first and conn.their_state is h11.IDLE:
                        break  # an idle keep-alive connection: just close it
                    raise _Reply(408, "request headers not received in time", close=True) from None
                if not isinstance(event, h11.Request):
                    break  # the client closed the connection
                first = False
                await self._request(conn, reader, writer, event)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except _Reply as reply:
            await self._send(conn, writer, reply.status, reply.message, close=True, json_body=False)
        except h11.RemoteProtocolError as exc:
            self.service.metrics.http_refused.add(1, {"reason": "bad_http"})
            await self._send(conn, writer, exc.error_status_hint or 400, f"not valid HTTP/1.1: {exc}", close=True,
                             json_body=False)
        except (ConnectionError, asyncio.IncompleteReadError, OSError, h11.LocalProtocolError):
            pass  # the client went away: nothing to say, nobody to say it to
        finally:
            self.connections -= 1
            self._writers.discard(writer)
            await self._close(writer)

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader, timeout: float):
        async def wait():
            while True:
                event = conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
                conn.receive_data(await reader.read(READ_CHUNK))
        return await asyncio.wait_for(wait(), timeout)

    async def _request(self, conn, reader, writer, request: h11.Request) -> None:
        limits = self.limits
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        path = request.target.decode("latin-1").split("?", 1)[0]
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        as_json = content_type == "application/json"
        limit = limits.max_request_bytes
        try:
            if self.tokens.enabled and not self.tokens.allows(headers.get("authorization")):
                self.service.metrics.unauthenticated.add(1, {"protocol": "http"})
                raise _Reply(401, "a valid bearer token is required", close=True,
                             headers=(("WWW-Authenticate", 'Bearer realm="nhi-convergence"'),))
            if request.method != b"POST":
                raise _Reply(405 if path in ROUTES else 404, "use POST /v1/traces, /v1/logs or /v1/metrics", close=True)
            route = ROUTES.get(path)
            if route is None:
                raise _Reply(404, f"no OTLP route {path}; use /v1/traces, /v1/logs or /v1/metrics", close=True)
            signal, request_cls, response_cls = route
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                self.service.malformed(signal)
                raise _Reply(413, f"body of {declared} bytes is over the {limit}-byte limit", close=True)
            # The body is held while it is read and processed: reserved first, or refused unread.
            holding = int(declared) if declared is not None and declared.isdigit() else limit
            if not self.service.budget.reserve(holding):
                self.service.metrics.refused.add(1, {"signal": signal, "reason": "memory"})
                raise _Reply(429, f"the processor holds {self.service.budget.held >> 20} MiB of requests "
                                  f"(service.memory_limit_mib): retry later", close=True,
                             headers=(("Retry-After", str(max(1, round(self.service.config.service.retry_after_s)))),))
            try:
                await self._held_request(conn, reader, writer, signal, request_cls, response_cls, headers,
                                         content_type, as_json, limit)
            finally:
                self.service.budget.release(holding)
        except _Reply as reply:
            await self._send(conn, writer, reply.status, reply.message, close=reply.close, headers=reply.headers,
                             json_body=as_json)

    async def _held_request(self, conn, reader, writer, signal, request_cls, response_cls, headers,
                            content_type: str, as_json: bool, limit: int) -> None:
        limits = self.limits
        try:
            try:
                body = await asyncio.wait_for(self._body(conn, reader, limit), limits.http_read_timeout_s)
            except asyncio.TimeoutError:
                self.service.metrics.http_refused.add(1, {"reason": "slow_body"})
                raise _Reply(408, f"body not received within {limits.http_read_timeout_s:g} s", close=True) from None
            except _TooLarge:
                self.service.malformed(signal)
                raise _Reply(413, f"body is over the {limit}-byte limit", close=True) from None
            encoding = headers.get("content-encoding", "").strip().lower()
            try:
                if encoding == "gzip":
                    body = gunzip(body, min(limit, max(1 << 20, len(body) * limits.max_decompression_ratio)))
                elif encoding not in ("", "identity"):
                    raise ValueError(f"unsupported Content-Encoding {encoding!r}")
            except _TooLarge:
                self.service.malformed(signal)
                raise _Reply(413, f"decompressed body is over the {limit}-byte limit or expands more than "
                                  f"{limits.max_decompression_ratio} times (service.max_decompression_ratio)") from None
            except (ValueError, zlib.error) as exc:
                self.service.malformed(signal)
                raise _Reply(400, f"body could not be decompressed: {exc}") from None
            if content_type not in ("application/x-protobuf", "application/json"):
                self.service.malformed(signal)
                raise _Reply(415, f"Content-Type {content_type!r}: use application/x-protobuf or application/json")
            status, payload, extra = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._handle, signal, request_cls, response_cls, body, as_json)
            await self._send(conn, writer, status, payload, headers=extra, json_body=as_json)
        except _Reply as reply:
            await self._send(conn, writer, reply.status, reply.message, close=reply.close, headers=reply.headers,
                             json_body=as_json)

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader, limit: int) -> bytes:
        chunks, size = [], 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(READ_CHUNK)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise _TooLarge()
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise ConnectionError("connection closed mid-body")

    def _handle(self, signal, request_cls, response_cls, body: bytes, as_json: bool):
        """In a worker thread: admit, parse, process, forward. Returns (status, payload, headers)."""
        service = self.service
        retry = (("Retry-After", str(max(1, round(service.config.service.retry_after_s)))),)
        try:
            if as_json:
                data = parse_json(body, request_cls, service.config.service.max_records_per_request).SerializeToString()
            else:
                data = body
            reserved, records = service.admit(signal, data)
        except Overloaded as exc:
            return 429, str(exc), retry
        except (Rejected, TooManyRecords) as exc:
            if isinstance(exc, TooManyRecords):  # admit counts its own refusals
                service.metrics.refused.add(1, {"signal": signal, "reason": "records"})
            return 413, str(exc), ()
        except (ValueError, json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
            service.malformed(signal)
            return 400, f"body is not a valid OTLP JSON {request_cls.__name__}: {exc}", ()
        try:
            partial = service.handle(signal, data, records)  # the bytes, to the batch contract
        except Unavailable as exc:
            return 503, str(exc), retry
        except Rejected as exc:  # not valid OTLP (counted as malformed), or not safe to forward
            text = str(exc)
            return 400, ("body is " + text.replace("not a valid OTLP ", "not a valid OTLP protobuf ", 1)
                         if text.startswith("not a valid OTLP ") else text), ()
        finally:
            service.budget.release(reserved)
        response = response_with(signal, partial)
        if as_json:
            return 200, json.dumps(json_format.MessageToDict(response)).encode(), ()
        return 200, response.SerializeToString(), ()

    async def _send(self, conn, writer, status: int, payload, close: bool = False, headers=(), json_body=False) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        if isinstance(payload, str):  # an error: a google.rpc.Status, as the OTLP specification asks
            code = _CODES.get(status, 2)
            if json_body:
                payload = json.dumps({"code": code, "message": payload}).encode()
            else:
                payload = status_pb2.Status(code=code, message=payload).SerializeToString()
        content_type = b"application/json" if json_body else b"application/x-protobuf"
        head = [(b"Content-Type", content_type), (b"Content-Length", str(len(payload)).encode())]
        head += [(k.encode(), v.encode()) for k, v in headers]
        if close:
            head.append((b"Connection", b"close"))
        try:
            writer.write(conn.send(h11.Response(status_code=status, headers=head)))
            writer.write(conn.send(h11.Data(data=payload)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        except (ConnectionError, OSError, h11.LocalProtocolError):
            pass

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        try:
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 2)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass


def start_http_server(service, listen: str) -> tuple[HttpServer, int]:
    server = HttpServer(service, listen)
    return server, server.start()
