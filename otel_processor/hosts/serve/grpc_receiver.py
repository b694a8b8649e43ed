"""OTLP/gRPC receiver: traces, logs and metrics services onto ``Service.handle``.

Requests arrive as bytes and are parsed here, so that a request that does not decode is answered
INVALID_ARGUMENT (and counted) rather than gRPC's INTERNAL, and the wire reader reads the bytes
as they came. Back-pressure and downstream trouble are answered UNAVAILABLE with a
``google.rpc.RetryInfo`` detail: the Collector's OTLP exporter retries that, whereas
RESOURCE_EXHAUSTED without RetryInfo is treated as permanent and the data dropped.
"""

from __future__ import annotations

import logging
import socket
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ...errors import ConfigError
from .admission import Overloaded
from .answers import Rejected, Unavailable
from .auth import BearerTokens, grpc_server_credentials
from .forwarder import RESPONSES, Partial

log = logging.getLogger(__name__)

SERVICES = {
    "traces": ("opentelemetry.proto.collector.trace.v1.TraceService", trace_service_pb2.ExportTraceServiceRequest,
               trace_service_pb2.ExportTraceServiceResponse),
    "logs": ("opentelemetry.proto.collector.logs.v1.LogsService", logs_service_pb2.ExportLogsServiceRequest,
             logs_service_pb2.ExportLogsServiceResponse),
    "metrics": ("opentelemetry.proto.collector.metrics.v1.MetricsService",
                metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
}


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple


def unavailable_status(message: str, retry_after_s: float,
                       code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> grpc.Status:
    """``code`` with a ``google.rpc.RetryInfo``: what the Collector's exporter retries (for
    RESOURCE_EXHAUSTED only with the RetryInfo)."""
    detail = error_details_pb2.RetryInfo(
        retry_delay=Duration(seconds=int(retry_after_s), nanos=int((retry_after_s % 1) * 1e9)))
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(detail)
    return _Status(code, message, (("grpc-status-details-bin", status.SerializeToString()),))


def response_with(signal: str, partial: Partial | None):
    """The signal's response, carrying downstream's ``partial_success`` as it gave it."""
    response_cls, field_name = RESPONSES[signal]
    response = response_cls()
    if partial is not None:
        setattr(response.partial_success, field_name, partial.rejected)
        response.partial_success.error_message = partial.message
    return response


def _export(service, signal: str, request_cls, tokens: BearerTokens):
    retry_after = service.config.service.retry_after_s

    def export(messages, context):
        # A stream handler for a unary method (the same on the wire): the message is read only
        # when asked for, so a request without a valid token is refused before its body is.
        if tokens.enabled:
            metadata = dict(context.invocation_metadata())
            if not tokens.allows(metadata.get("authorization")):
                service.metrics.unauthenticated.add(1, {"signal": signal, "protocol": "grpc"})
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required")
        data = next(messages, None)
        if data is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no request message")
        try:
            reserved, records = service.admit(signal, data)
        except Overloaded as exc:
            context.abort_with_status(unavailable_status(str(exc), retry_after, grpc.StatusCode.RESOURCE_EXHAUSTED))
        except Rejected as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            partial = service.handle(signal, data, records)  # the bytes as they came, to the batch contract
        except Unavailable as exc:
            context.abort_with_status(unavailable_status(str(exc), retry_after))
        except Rejected as exc:  # not valid OTLP (counted as malformed), or not safe to forward
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            service.budget.release(reserved)
        remaining = context.time_remaining()
        if not context.is_active() or (remaining is not None and remaining <= 0):
            # Delivered, but the sender's deadline passed first: it counts the export as failed
            # and retries it, which would deliver the batch twice.
            service.delivered_after_the_senders_deadline(data)
        return response_with(signal, partial)

    return export


def _check_bindable(listen: str) -> None:
    """A busy or foreign address is one line from us, not gRPC core's log line and a vague error."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror}", "service.listen_grpc") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {listen}: {exc.strerror}", "service.listen_grpc") from None


def start_grpc_server(service, listen: str) -> tuple[grpc.Server, int]:
    svc = service.config.service
    tokens = service.tokens
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=svc.max_concurrent_batches + 4, thread_name_prefix="nhi-grpc"),
        options=[("grpc.max_receive_message_length", svc.max_request_bytes),
                 ("grpc.max_send_message_length", svc.max_request_bytes),
                 ("grpc.max_connection_idle_ms", int(svc.http_idle_timeout_s * 1000)),
                 ("grpc.max_concurrent_streams", svc.grpc_max_streams_per_connection),
                 ("grpc.so_reuseport", 0)],
        # No maximum_concurrent_rpcs: gRPC would answer RESOURCE_EXHAUSTED past it, which the
        # Collector drops as permanent. Service.handle refuses with UNAVAILABLE instead.
    )
    handlers = []
    for signal, (name, request_cls, response_cls) in SERVICES.items():
        method = grpc.stream_unary_rpc_method_handler(
            _export(service, signal, request_cls, tokens),
            request_deserializer=None,  # the bytes as they came
            response_serializer=response_cls.SerializeToString)
        handlers.append(grpc.method_handlers_generic_handler(name, {"Export": method}))
    server.add_generic_rpc_handlers(handlers)
    # The standard gRPC health service (grpc.health.v1, what Kubernetes' grpc probe and grpc-health-probe
    # ask), without a token like the Collector's: "" and each OTLP service name.
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    service.grpc_health = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(service.grpc_health, server)
    for name in ("", *(name for name, _, _ in SERVICES.values())):
        service.grpc_health.set(name, health_pb2.HealthCheckResponse.SERVING)
    credentials = grpc_server_credentials(svc)
    _check_bindable(listen)
    try:
        port = (server.add_secure_port(listen, credentials) if credentials is not None
                else server.add_insecure_port(listen))
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"cannot listen on {listen}: the address is in use or not this machine's",
                          "service.listen_grpc")
    server.start()
    return server, port
