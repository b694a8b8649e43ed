"""Convergence events as OTLP log records (TELEMETRY.md section 4).

PLACEHOLDER signature; the behaviour engine (issue 4) fills in every attribute.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from .model import ConvergenceEvent

EVENT_NAME = "nhi.convergence"


def events_request(events: Sequence[ConvergenceEvent], service_name: str) -> ExportLogsServiceRequest:
    """One ExportLogsServiceRequest carrying ``events``, resource ``service.name`` = ours."""
    request = ExportLogsServiceRequest()
    if not events:
        return request
    resource_logs = request.resource_logs.add()
    attr = resource_logs.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", service_name
    scope = resource_logs.scope_logs.add()
    scope.scope.name = "nhi-convergence"
    for event in events:
        record = scope.log_records.add()
        record.event_name = EVENT_NAME
        record.time_unix_nano = event.time_ns
        record.body.string_value = event.body
    return request
