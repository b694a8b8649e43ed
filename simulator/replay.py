"""Sending telemetry over real OTLP: gRPC (``host:port``) or OTLP/HTTP (``http(s)://...``).

Requests go in event-time order. ``speed`` 0 sends as fast as the receiver takes them; 1 keeps
real time between batches; N runs N times faster. UNAVAILABLE / 503 / 429 are retried with the
advertised delay, as a collector's exporter would, for up to ``give_up_s``; an endpoint nobody
listens on is given ``connect_give_up_s``; anything else stops the replay with the error.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import urllib.parse
from collections.abc import Iterable, Iterator

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tqdm import tqdm

from otel_processor.otlp_json import parse_json, to_otlp_json

PATHS = {"traces": "/v1/traces", "logs": "/v1/logs"}
METHODS = {"traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
           "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export"}
RETRYABLE_HTTP = (429, 502, 503, 504)


def _status_message(body: bytes) -> str:
    """The message of an OTLP/HTTP error body (a google.rpc.Status, protobuf or JSON)."""
    from google.rpc import status_pb2

    try:
        return status_pb2.Status.FromString(body).message[:200] or "(no message)"
    except Exception:  # noqa: BLE001 - any other body: shown as it is
        try:
            return str(json.loads(body).get("message", ""))[:200] or body[:200].decode(errors="replace")
        except Exception:  # noqa: BLE001
            return body[:200].decode(errors="replace")


class ReplayError(RuntimeError):
    pass


class _CannotConnect(Exception):
    pass


class Sender:
    def __init__(self, endpoint: str, timeout_s: float = 30.0, give_up_s: float = 120.0,
                 connect_give_up_s: float = 10.0):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.give_up_s = give_up_s
        self.connect_give_up_s = connect_give_up_s
        self.http = endpoint.startswith(("http://", "https://"))
        if self.http:
            u = urllib.parse.urlsplit(endpoint.rstrip("/"))
            cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
            self._conn_args = (cls, u.hostname, u.port or (443 if u.scheme == "https" else 80), u.path)
            self._conn = None
        else:
            self._channel = grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 << 20)])
            self._calls = {s: self._channel.unary_unary(m, request_serializer=lambda b: b,
                                                        response_deserializer=lambda b: b)
                           for s, m in METHODS.items()}

    def send(self, signal: str, payload: bytes) -> None:
        started = time.monotonic()
        last = ""
        while True:
            try:
                delay = self._try(signal, payload)
            except _CannotConnect as exc:
                if time.monotonic() - started >= self.connect_give_up_s:
                    raise ReplayError(f"cannot connect to {self.endpoint}: connection refused "
                                      f"(is anything listening there?) {exc}".rstrip()) from None
                time.sleep(0.5)
                continue
            if delay is None:
                return
            delay, reason = delay
            if not last:  # said once per batch: a refusal is not silence
                print(f"nhi-sim: {self.endpoint} answered, but refuses for now: {reason}; retrying for up to "
                      f"{self.give_up_s:.0f} s", file=sys.stderr, flush=True)
            last = f"{self.endpoint} answered, but kept refusing a {signal} batch for {self.give_up_s:.0f} s: {reason}"
            if time.monotonic() - started >= self.give_up_s:
                raise ReplayError(last)
            time.sleep(delay)

    def _try(self, signal: str, payload: bytes) -> tuple[float, str] | None:
        """None when delivered; (delay, why) for a retryable refusal."""
        if not self.http:
            try:
                self._calls[signal](payload, timeout=self.timeout_s)
                return None
            except grpc.RpcError as exc:
                details = exc.details() or ""
                answered = any(k == "grpc-status-details-bin" for k, _ in exc.trailing_metadata() or ())
                # A processor that answered carries RetryInfo, and its own message may quote its
                # downstream's connection error: only an unanswered call is "nothing listening".
                if exc.code() == grpc.StatusCode.UNAVAILABLE and not answered and (
                        "failed to connect" in details or "Connection refused" in details):
                    raise _CannotConnect() from None
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    return 0.5, f"no answer within {self.timeout_s:g} s"
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                    return 0.5, f"{exc.code().name}: {details[:200]}"
                raise ReplayError(f"{self.endpoint} answered {exc.code().name}: {details}") from None
        cls, host, port, base = self._conn_args
        if self._conn is None:
            self._conn = cls(host, port, timeout=self.timeout_s)
        try:
            self._conn.request("POST", base + PATHS[signal], body=payload,
                               headers={"Content-Type": "application/x-protobuf"})
            response = self._conn.getresponse()
            body = response.read()
        except ConnectionRefusedError:
            self._conn.close()
            self._conn = None
            raise _CannotConnect() from None
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            self._conn = None
            return 0.5, f"the connection failed ({exc})"
        if 200 <= response.status < 300:
            return None
        if response.status in RETRYABLE_HTTP:
            return float(response.getheader("Retry-After") or 1), f"HTTP {response.status}: {_status_message(body)}"
        raise ReplayError(f"{self.endpoint} answered HTTP {response.status}: {body[:200]!r}")

    def close(self) -> None:
        if self.http:
            if self._conn is not None:
                self._conn.close()
        else:
            self._channel.close()


def replay(batches: Iterable[tuple[str, object, int]], endpoint: str, speed: float = 0.0,
           total_records: int | None = None, progress: bool = True) -> int:
    """Send every batch; returns the number of records sent."""
    sender = Sender(endpoint)
    sent = 0
    first_event = first_wall = None
    # disable=None: no bar when stderr is not a terminal (logs, CI), as tqdm documents
    bar = tqdm(total=total_records, unit="rec", disable=None if progress else True, desc="replay", leave=False)
    try:
        for signal, request, last_ns in batches:
            if speed > 0:
                if first_event is None:
                    first_event, first_wall = last_ns, time.monotonic()
                due = first_wall + (last_ns - first_event) / 1e9 / speed
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            n = count(signal, request)
            sender.send(signal, request.SerializeToString())
            sent += n
            bar.update(n)
    finally:
        bar.close()
        sender.close()
    return sent


def count(signal: str, request) -> int:
    if signal == "traces":
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def write_jsonl(batches: Iterable[tuple[str, object, int]], path: str) -> int:
    """OTLP JSON lines, as the Collector's file exporter writes them (hex ids)."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for signal, request, _ in batches:
            fh.write(json.dumps(to_otlp_json(request), separators=(",", ":")) + "\n")
            n += count(signal, request)
    return n


def read_jsonl(path: str) -> Iterator[tuple[str, object, int]]:
    """Batches from an OTLP JSON lines file (ours or a Collector file exporter's capture)."""
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read: {exc.strerror}") from None
    with fh:
        for line_no, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
                if "resourceSpans" in data:
                    signal, request = "traces", parse_json(line.encode(), ExportTraceServiceRequest)
                elif "resourceLogs" in data:
                    signal, request = "logs", parse_json(line.encode(), ExportLogsServiceRequest)
                else:
                    continue  # metrics and anything else: not ours to replay
            except (ValueError, RecursionError) as exc:
                raise ReplayError(f"{path}:{line_no}: not an OTLP JSON line: {str(exc).splitlines()[0]}") from None
            yield signal, request, _last_time(signal, request)


def _last_time(signal: str, request) -> int:
    if signal == "traces":
        times = [s.start_time_unix_nano for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    else:
        times = [r.time_unix_nano or r.observed_time_unix_nano for rl in request.resource_logs
                 for sl in rl.scope_logs for r in sl.log_records]
    return max(times, default=0)
