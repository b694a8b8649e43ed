"""The batch path: one OTLP export request processed in place.

For every record: decode only the attributes that matter, resolve the identity, build the
observation, ask the engine, write ``nhi.*`` attributes, replace credential values by their
fingerprints. Hosts (the OTLP service, the Rotel processor) own all I/O; this module owns none.

A record that cannot be attributed, or whose processing raises, is left exactly as it came and
counted: nothing is dropped here.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from .config import ProcessorConfig
from .engine import Engine
from .model import ConvergenceEvent, Identity, Verdict
from .observe import AUDIT_CATEGORIES, WANTED, is_cloudtrail, log_action, log_outcome, log_signal
from .observe import observe as make_observation
from .observe import span_action, span_outcome, span_signal
from .resolve import CONSENT_ACTION, CREDENTIAL_ATTRIBUTES, Resolver, masked

log = logging.getLogger(__name__)

_CREDENTIAL_KEYS = frozenset(CREDENTIAL_ATTRIBUTES)
_NHI_PREFIX = "nhi."
SERVER = 2


@dataclass
class BatchResult:
    records: int = 0           # records in the request
    attributed: int = 0        # records an identity was resolved for
    unattributed: int = 0      # records forwarded unchanged
    failed: int = 0            # records whose processing raised (forwarded unchanged)
    events: list[ConvergenceEvent] = field(default_factory=list)


def any_to_py(v: AnyValue):
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return [any_to_py(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_to_py(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def read_attributes(attributes) -> tuple[dict, bool]:
    """The wanted attributes as Python values; and whether any credential or nhi.* key is present."""
    out = {}
    special = False
    for kv in attributes:
        key = kv.key
        if key in WANTED:
            out[key] = any_to_py(kv.value)
            if key in _CREDENTIAL_KEYS:
                special = True
        elif key.startswith(_NHI_PREFIX):
            special = True
    return out, special


def mask_credentials(attributes) -> None:
    """Replace credential values in place by their fingerprints; strip forged ``nhi.*`` values."""
    doomed = []
    for i, kv in enumerate(attributes):
        key = kv.key
        if key in _CREDENTIAL_KEYS:
            value = kv.value
            if value.WhichOneof("value") == "array_value":
                for item in value.array_value.values:
                    if item.string_value and not item.string_value.startswith("sha256:"):
                        item.string_value = masked(item.string_value)
            else:
                raw = value.string_value
                if not raw.startswith("sha256:"):
                    value.Clear()
                    value.string_value = masked(raw) if raw else ""
        elif key.startswith(_NHI_PREFIX):
            doomed.append(i)
    for i in reversed(doomed):
        del attributes[i]


def enrich(attributes, identity: Identity, verdict: Verdict) -> None:
    kv = attributes.add()
    kv.key = "nhi.identity.id"
    kv.value.string_value = identity.id
    kv = attributes.add()
    kv.key = "nhi.identity.kind"
    kv.value.string_value = identity.kind
    kv = attributes.add()
    kv.key = "nhi.identity.source"
    kv.value.string_value = identity.source
    if identity.owner:
        kv = attributes.add()
        kv.key = "nhi.identity.owner"
        kv.value.string_value = identity.owner
    kv = attributes.add()
    kv.key = "nhi.trust.score"
    kv.value.double_value = verdict.trust_score
    if verdict.anomalies:
        kv = attributes.add()
        kv.key = "nhi.anomaly"
        values = kv.value.array_value.values
        for name in verdict.anomalies:
            values.add().string_value = name
    if verdict.convergence_id:
        kv = attributes.add()
        kv.key = "nhi.convergence.id"
        kv.value.string_value = verdict.convergence_id


class BatchProcessor:
    """Thread-safe: hosts may call it from several threads at once."""

    def __init__(self, config: ProcessorConfig | None = None, engine: Engine | None = None, catalog=None):
        self.config = config or ProcessorConfig()
        self.catalog = catalog
        self.engine = engine if engine is not None else Engine(self.config.engine, catalog=catalog)
        self.detect = self.config.engine.enabled
        self.resolver = Resolver(catalog)
        # One batch at a time through the engine keeps per-identity event-time order intact.
        self._lock = threading.Lock()

    def _observe(self, obs) -> Verdict:
        if not self.detect:
            return Verdict()
        return self.engine.observe(obs)

    # -- traces ------------------------------------------------------------------------------
    def process_traces(self, request: ExportTraceServiceRequest) -> BatchResult:
        result = BatchResult()
        with self._lock:
            for rs in request.resource_spans:
                res_attrs = rs.resource.attributes
                res, res_special = read_attributes(res_attrs)
                if res_special:
                    mask_credentials(res_attrs)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        result.records += 1
                        try:
                            self._one_span(span, res, result)
                        except Exception:  # noqa: BLE001 - a bad record must never lose the batch
                            result.failed += 1
                            log.exception("span could not be processed; forwarded unchanged")
            if self.detect:
                result.events = self.engine.take_events()
        return result

    def _one_span(self, span, res: dict, result: BatchResult) -> None:
        attrs = span.attributes
        rec, special = read_attributes(attrs)
        if special:
            mask_credentials(attrs)
        kind = span.kind
        identity = self.resolver.resolve(rec, res, is_span=True, span_kind=kind)
        if identity is None:
            result.unattributed += 1
            return
        obs = make_observation(
            identity, rec, res,
            signal=span_signal(rec, res),
            action=span_action(rec, span.name),
            time_ns=span.start_time_unix_nano or span.end_time_unix_nano,
            outcome=span_outcome(rec, span.status.code),
            server_span=kind == SERVER,
            trace_id=span.trace_id,
            span_id=span.span_id,
        )
        enrich(attrs, identity, self._observe(obs))
        result.attributed += 1

    # -- logs --------------------------------------------------------------------------------
    def process_logs(self, request: ExportLogsServiceRequest) -> BatchResult:
        result = BatchResult()
        with self._lock:
            for rl in request.resource_logs:
                res_attrs = rl.resource.attributes
                res, res_special = read_attributes(res_attrs)
                if res_special:
                    mask_credentials(res_attrs)
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        result.records += 1
                        try:
                            self._one_log(record, res, result)
                        except Exception:  # noqa: BLE001
                            result.failed += 1
                            log.exception("log record could not be processed; forwarded unchanged")
            if self.detect:
                result.events = self.engine.take_events()
        return result

    def _one_log(self, record, res: dict, result: BatchResult) -> None:
        attrs = record.attributes
        rec, special = read_attributes(attrs)
        if special:
            mask_credentials(attrs)
        event_name = record.event_name or rec.get("event.name") or None
        action = log_action(rec, event_name)
        category = rec.get("event.category")
        audit = category in AUDIT_CATEGORIES or is_cloudtrail(rec)
        identity = self.resolver.resolve(rec, res, is_span=False, is_consent=action == CONSENT_ACTION,
                                         audit_log=audit)
        if identity is None:
            result.unattributed += 1
            return
        obs = make_observation(
            identity, rec, res,
            signal=log_signal(rec, res, event_name),
            action=action,
            time_ns=record.time_unix_nano or record.observed_time_unix_nano,
            outcome=log_outcome(rec),
            server_span=False,
            trace_id=record.trace_id,
            span_id=record.span_id,
        )
        enrich(attrs, identity, self._observe(obs))
        result.attributed += 1
