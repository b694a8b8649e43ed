"""OTLP/gRPC receiver: traces, logs and metrics services onto ``Service.handle``.

Back-pressure and downstream trouble are answered UNAVAILABLE with a ``google.rpc.RetryInfo``
detail: the Collector's OTLP exporter retries that, whereas RESOURCE_EXHAUSTED without RetryInfo
is treated as permanent and the data dropped.
"""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from .answers import Rejected, Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple


def unavailable_status(message: str, retry_after_s: float) -> grpc.Status:
    detail = error_details_pb2.RetryInfo(
        retry_delay=Duration(seconds=int(retry_after_s), nanos=int((retry_after_s % 1) * 1e9)))
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    status.details.add().Pack(detail)
    return _Status(grpc.StatusCode.UNAVAILABLE, message,
                   (("grpc-status-details-bin", status.SerializeToString()),))


def _handler(service, signal: str, response_cls):
    retry_after = service.config.service.retry_after_s

    def export(request, context):
        try:
            service.handle(signal, request)
        except Unavailable as exc:
            context.abort_with_status(unavailable_status(str(exc), retry_after))
        except Rejected as exc:
            service.malformed(signal)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return response_cls()

    return export


def start_grpc_server(service, listen: str) -> tuple[grpc.Server, int]:
    svc = service.config.service
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=svc.max_concurrent_batches + 4,
                                   thread_name_prefix="nhi-grpc"),
        options=[("grpc.max_receive_message_length", svc.max_request_bytes),
                 ("grpc.max_send_message_length", svc.max_request_bytes)],
        # No maximum_concurrent_rpcs: gRPC would answer RESOURCE_EXHAUSTED past it, which the
        # Collector drops as permanent. Service.handle refuses with UNAVAILABLE instead.
    )

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        Export = staticmethod(_handler(service, "traces", trace_service_pb2.ExportTraceServiceResponse))

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        Export = staticmethod(_handler(service, "logs", logs_service_pb2.ExportLogsServiceResponse))

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        Export = staticmethod(_handler(service, "metrics", metrics_service_pb2.ExportMetricsServiceResponse))

    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {listen}")
    server.start()
    return server, port
