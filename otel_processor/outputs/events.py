"""Convergence events as OTLP log records (TELEMETRY.md section 4).

The ``security_rule.*`` names follow the OpenTelemetry semantic conventions' security-rule
attributes (still in development); ``nhi.*`` is this project's vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from ..model import ConvergenceEvent
from .redact import mask_text

EVENT_NAME = "nhi.convergence"
RULESET = "nhi-convergence"

# Score bands, as the big SIEMs band risk (Elastic's risk score: low, medium, high, critical),
# and the OTLP severity each is sent with. Lower bound inclusive.
BANDS = (
    (0.9, "critical", SeverityNumber.SEVERITY_NUMBER_FATAL, "FATAL"),
    (0.7, "high", SeverityNumber.SEVERITY_NUMBER_ERROR, "ERROR"),
    (0.5, "medium", SeverityNumber.SEVERITY_NUMBER_WARN, "WARN"),
    (0.0, "low", SeverityNumber.SEVERITY_NUMBER_INFO, "INFO"),
)


def severity_band(score: float) -> str:
    """``low`` (< 0.5), ``medium`` (< 0.7), ``high`` (< 0.9) or ``critical``."""
    return _band(score)[1]


def _band(score: float) -> tuple:
    for band in BANDS:
        if score >= band[0]:
            return band
    return BANDS[-1]


def _put(attributes, key: str, value) -> None:
    kv = attributes.add()
    kv.key = key
    if isinstance(value, str):
        kv.value.string_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.array_value.SetInParent()  # an empty list is still a list, not an unset value
        values = kv.value.array_value.values
        for item in value:
            values.add().string_value = str(item)


def fill_record(record, event: ConvergenceEvent) -> None:
    record.event_name = EVENT_NAME
    record.time_unix_nano = event.time_ns
    record.observed_time_unix_nano = event.time_ns
    _, band, number, text = _band(event.score)
    record.severity_number = number
    record.severity_text = text
    # Events are built from masked records; masking their text again costs little and means no
    # path through the engine can carry a credential out.
    record.body.string_value = mask_text(event.body)
    if event.trace_id:
        record.trace_id = event.trace_id
    if event.span_id:
        record.span_id = event.span_id
    a = record.attributes
    _put(a, "event.name", EVENT_NAME)
    _put(a, "nhi.identity.id", event.identity.id)
    _put(a, "nhi.identity.kind", event.identity.kind)
    if event.identity.owner:
        _put(a, "nhi.identity.owner", event.identity.owner)
    _put(a, "nhi.convergence.id", event.convergence_id)
    _put(a, "nhi.convergence.version", event.version)
    _put(a, "nhi.convergence.score", float(event.score))
    _put(a, "nhi.convergence.severity", band)
    _put(a, "nhi.convergence.signals", list(event.signals))
    _put(a, "nhi.convergence.findings", [mask_text(f) for f in event.findings])
    _put(a, "nhi.convergence.first_seen", event.first_seen_ns)
    _put(a, "nhi.convergence.last_seen", event.last_seen_ns)
    _put(a, "nhi.evidence.trace_ids", list(event.evidence_trace_ids))
    _put(a, "nhi.identity.related", list(event.related_identities))
    _put(a, "security_rule.name", event.rule_name)
    _put(a, "security_rule.category", event.rule_category)
    _put(a, "security_rule.ruleset.name", RULESET)
    _put(a, "security_rule.reference", ", ".join(event.rule_references))
    _put(a, "security_rule.description", event.rule_description)


def events_request(events: Sequence[ConvergenceEvent], service_name: str) -> ExportLogsServiceRequest:
    """One ExportLogsServiceRequest carrying ``events``, resource ``service.name`` = ours."""
    request = ExportLogsServiceRequest()
    if not events:
        return request
    resource_logs = request.resource_logs.add()
    _put(resource_logs.resource.attributes, "service.name", service_name)
    scope = resource_logs.scope_logs.add()
    scope.scope.name = "nhi-convergence"
    for event in events:
        fill_record(scope.log_records.add(), event)
    return request
