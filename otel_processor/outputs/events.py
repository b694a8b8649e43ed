"""Convergence events as OTLP log records (TELEMETRY.md section 4).

The ``security_rule.*`` names follow the OpenTelemetry semantic conventions' security-rule
attributes (still in development); ``source.address``, ``user_agent.original`` and
``geo.country.iso_code`` the general semantic conventions (the latest value among the evidence);
``threat.technique.id`` ECS's; ``nhi.*`` is this project's vocabulary.

Deduplication: an incident keeps one ``nhi.convergence.id`` while it grows and each update is a
new record with ``nhi.convergence.version`` one higher; a record with a higher version supersedes
every earlier one of the same id (it carries all their facets), so a SIEM keeps the highest
version per id. ``event.id`` (``<convergence id>.<version>``) is unique per record sent; a
re-sent record (the events endpoint was down) carries the same one.

``body_format``: ``text`` (the sentence) or ``ocsf`` (an OCSF Detection Finding as JSON text,
``outputs/ocsf.py``); the attributes are the same in both, so routing does not depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from ..model import ConvergenceEvent
from .event_facts import BANDS, attack_ids, band_of, latest, overflowed, owasp_ids, severity_band
from .redact import mask_secrets

__all__ = ["BANDS", "EVENT_NAME", "events_request", "fill_record", "severity_band"]

EVENT_NAME = "nhi.convergence"
RULESET = "nhi-convergence"

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


def fill_record(record, event: ConvergenceEvent, body_format: str = "text") -> None:
    record.event_name = EVENT_NAME
    record.time_unix_nano = event.time_ns
    record.observed_time_unix_nano = event.time_ns
    _, band, number, text = band_of(event.score)
    record.severity_number = number
    record.severity_text = text
    # Events are built from masked records; masking their text again costs little and means no
    # path through the engine can carry a credential out.
    if body_format == "ocsf":
        from .ocsf import detection_finding_json

        record.body.string_value = detection_finding_json(event)
    else:
        record.body.string_value = mask_secrets(event.body)
    if event.trace_id:
        record.trace_id = event.trace_id
    if event.span_id:
        record.span_id = event.span_id
    a = record.attributes
    _put(a, "event.name", EVENT_NAME)
    _put(a, "event.id", f"{event.convergence_id}.{event.version}")
    _put(a, "nhi.identity.id", event.identity.id)
    _put(a, "nhi.identity.kind", event.identity.kind)
    if event.identity.owner:
        _put(a, "nhi.identity.owner", event.identity.owner)
    _put(a, "nhi.convergence.id", event.convergence_id)
    _put(a, "nhi.convergence.version", event.version)
    _put(a, "nhi.convergence.score", float(event.score))
    _put(a, "nhi.convergence.severity", band)
    _put(a, "nhi.convergence.signals", list(event.signals))
    _put(a, "nhi.convergence.findings", [mask_secrets(f) for f in event.findings])
    _put(a, "nhi.convergence.first_seen", event.first_seen_ns)
    _put(a, "nhi.convergence.last_seen", event.last_seen_ns)
    _put(a, "nhi.evidence.trace_ids", list(event.evidence_trace_ids))
    _put(a, "nhi.identity.related", list(event.related_identities))
    _put(a, "security_rule.name", event.rule_name)
    _put(a, "security_rule.category", event.rule_category)
    _put(a, "security_rule.ruleset.name", RULESET)
    _put(a, "security_rule.reference", ", ".join(event.rule_references))
    _put(a, "security_rule.description", event.rule_description)
    _put(a, "threat.technique.id", attack_ids(event.rule_references))
    _put(a, "nhi.owasp.id", owasp_ids(event.rule_references))
    for key, fact in (("source.address", "source.address"), ("user_agent.original", "user_agent.original"),
                      ("geo.country.iso_code", "geo.country.iso_code"), ("nhi.credential.id", "credential")):
        value = latest(event, fact)
        if value:
            _put(a, key, mask_secrets(value))
    for key, fact in (("nhi.convergence.actions", "action"), ("nhi.convergence.targets", "target"),
                      ("nhi.convergence.networks", "network"), ("nhi.evidence.record_ids", "record_id")):
        _put(a, key, [mask_secrets(v) for v in event.facts.get(fact, ())])
    overflow = overflowed(event)
    if overflow:  # those lists hold the first values only: an exception cannot vouch for them
        _put(a, "nhi.convergence.overflow", overflow)
    if event.response:
        _put(a, "nhi.response.suggested", event.response)


def events_request(events: Sequence[ConvergenceEvent], service_name: str,
                   body_format: str = "text") -> ExportLogsServiceRequest:
    """One ExportLogsServiceRequest carrying ``events``, resource ``service.name`` = ours."""
    request = ExportLogsServiceRequest()
    if not events:
        return request
    resource_logs = request.resource_logs.add()
    _put(resource_logs.resource.attributes, "service.name", service_name)
    scope = resource_logs.scope_logs.add()
    scope.scope.name = "nhi-convergence"
    for event in events:
        fill_record(scope.log_records.add(), event, body_format)
    return request
