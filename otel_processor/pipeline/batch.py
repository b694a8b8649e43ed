"""The batch path: one OTLP export request processed in place.

For every record: decode only the attributes that matter, resolve the identity, build the
observation, ask the engine, write ``nhi.*`` attributes, replace credential values by their
fingerprints. Hosts (the OTLP service, the Rotel processor) own all I/O; this module owns none.

Masking comes first and is never skipped: every request is masked (and stripped of forged
``nhi.*`` attributes and of fields too new to be checked) before anything else may fail, and
outside the per-record guard, so a failure to mask fails the whole batch, which the host then
scrubs or refuses (``scrub``). A record that cannot be attributed, or whose attribution raises,
is forwarded masked and otherwise as it came, and counted: nothing is dropped here.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from ..config import ProcessorConfig
from ..engine import Engine
from ..identity.resolver import Resolver
from ..identity.rules import IDENTITY_KEYS
from ..model import NEUTRAL_VERDICT, ConvergenceEvent
from ..observe.record import (
    AUDIT_CATEGORIES,
    CONSENT_ACTION,
    is_cloudtrail,
    log_action,
    log_outcome,
    log_signal,
    span_action,
    span_outcome,
    span_signal,
)
from ..observe.record import observe as make_observation
from ..outputs.enrich import LOG_ATTRIBUTES_FIELD, SPAN_ATTRIBUTES_FIELD, enrich
from ..outputs.redact import redactor_for
from ..anyvalue import to_python
from ..inputs.record import Mapped
from .attributes import (
    DIRTY,
    ELSEWHERE,
    HAS_OURS,
    KEYS_FOR_DETECTION,
    KEYS_FOR_RESOLUTION,
    OBJECT_BODY,
    RequestReader,
    Scan,
    read_attributes,
)
from .vendor import looks_like_object, read_vendor_record
from .views import LogView, SpanView, ViewReader, Views

log = logging.getLogger(__name__)

_MISSING = object()
SERVER = 2


@dataclass
class BatchResult:
    records: int = 0           # records in the request
    attributed: int = 0        # records an identity was resolved for
    unattributed: int = 0      # records forwarded unchanged
    failed: int = 0            # records whose processing raised (forwarded unchanged)
    vendor: dict[str, int] = field(default_factory=dict)  # profile -> log records whose body it mapped
    vendor_skipped: dict[str, int] = field(default_factory=dict)  # "<profile>: <reason>" -> records (64 reasons)
    events: list[ConvergenceEvent] = field(default_factory=list)


class BatchProcessor:
    """Thread-safe: hosts may call it from several threads at once."""

    def __init__(self, config: ProcessorConfig | None = None, engine: Engine | None = None, catalog=None):
        self.config = config or ProcessorConfig()
        self.catalog = catalog
        self.engine = engine if engine is not None else Engine(self.config.engine, catalog=catalog)
        self.detect = self.config.engine.enabled
        self._keys = KEYS_FOR_DETECTION if self.detect else KEYS_FOR_RESOLUTION
        self.redactor = redactor_for(self.config.masking)
        self._reader = RequestReader(self._keys, self.redactor.key_action)
        if self._reader.available:
            self.redactor.trigger = self._reader.suspicious  # the native twin of the masking triggers
        self._views = ViewReader(self._reader)
        self.resolver = Resolver(catalog)
        # One batch at a time through the engine keeps per-identity event-time order intact.
        self._lock = threading.Lock()
        self._learn = True
        # Event time may run at most this far ahead of arrival (the processor's clock): a sender
        # cannot stamp records in the future to make every settled identity look idle.
        self._skew_ns = int(self.config.engine.max_future_skew_s * 1e9)
        self._latest_ns = 0
        self._data = b""  # the wire bytes of the request being processed

    # -- masking ------------------------------------------------------------------------------
    def _mask(self, signal: str, request, data: bytes | None, records: int, scan: Scan | None = None):
        """Masks what must be masked outside the records; returns an iterator of the native
        reader's per-record results (records it flagged are masked by the caller, in the loop),
        or None when everything was masked here and records are to be read with protobuf.
        ``scan``: what the reader already found in ``data`` (the spliced path's reading)."""
        if data is None:
            data = request.SerializeToString()
        self._data = data  # where the reader found map bodies: read from these bytes
        if scan is not None:
            scan = self._reader.matching(scan, records)
        elif self._reader.available and not self.redactor.checks_every_string:
            scan = self._reader.scan(signal, data, records)
        if scan is None:
            self.scrub(request, data)
            return None
        if scan.unknown:
            request.DiscardUnknownFields()
        entries = getattr(request, _ENTRIES[signal])
        for i in scan.dirty_entries:
            self.redactor.message(entries[i], skip_records=True)
        return iter(scan.reads) if scan.reads is not None else None

    def _mask_record(self, record, read: tuple) -> tuple:
        """Masks one record the native reader flagged; returns its reading, masked."""
        rec, special, flags, dirty, body_at = read
        if flags & ELSEWHERE:
            self.redactor.message(record)  # events, links, names, bodies...: the whole record
            # the body may have changed: read from the masked record, not from the bytes
            return read_attributes(record.attributes, self._keys) + (flags & OBJECT_BODY, None, -1)
        attributes = record.attributes
        stripped = bool(special & HAS_OURS)
        changed = self.redactor.attributes_at(attributes, dirty or (), strip=stripped)
        stale = changed.keys() & rec.keys()
        if not stale:
            return read
        # What the observation reads must be what is forwarded: the key's last occurrence, which is
        # the one just masked unless the same key follows it (indices shifted if some were dropped).
        if stripped:
            for kv in attributes:
                if kv.key in stale:
                    rec[kv.key] = to_python(kv.value)
            return read
        for key in stale:
            last = changed[key]
            if all(attributes[j].key != key for j in range(last + 1, len(attributes))):
                rec[key] = to_python(attributes[last].value)
        return read

    # -- the spliced path ---------------------------------------------------------------------
    @property
    def splices(self) -> bool:
        """Whether requests may take the spliced path (the native reader, and masking that the
        native triggers cover)."""
        return self._views.available and not self.redactor.checks_every_string

    def process_views(self, signal: str, data: bytes, learn: bool = True) -> tuple[bytes, BatchResult] | Scan | None:
        """A traces or logs request processed off its wire bytes: read by the native reader,
        the same per-record steps as ``process_traces``/``process_logs`` on record views, and the
        ``nhi.*`` attributes spliced into the request's own bytes (a record with something to
        mask is parsed alone, masked and put back whole). None, before anything is learnt, when
        the request holds a field this build does not know, something to mask outside its
        records, or anything protobuf would merge: the caller then takes the protobuf path, with
        what the reader found when it read the request (a ``Scan``: it is not read twice).

        A request as SDKs and Collectors write it (fields in number order, shortest lengths)
        leaves byte for byte as the protobuf path would forward it; any other leaves as it came,
        with the same records masked and the same attributes added."""
        views = self._views.read(signal, data) if self.splices else None
        if not isinstance(views, Views):
            return views
        result = BatchResult()
        spans = signal == "traces"
        one = self._one_span if spans else self._one_log
        parse = Span.FromString if spans else LogRecord.FromString
        edits = []
        with self._lock, self.engine.lock:
            self._learn = learn
            self._latest_ns = time.time_ns() + self._skew_ns  # later event times are the sender's, not ours
            self._data = data
            records, places, captured = views.records, views.places, views.captured
            first = 0
            for res, count in views.entries:
                by_resource: dict = {}
                for i in range(first, first + count):
                    read = records[i]
                    masked = read[1] or read[2] & DIRTY
                    if masked:  # outside the guard: a record that cannot be masked fails the batch
                        _, start, end = places[i]
                        view = parse(data[start:end])
                        read = self._mask_record(view, read)
                    else:
                        view = SpanView(captured[i]) if spans else LogView(captured[i], data)
                    result.records += 1
                    try:
                        one(view, read, res, by_resource, result)
                    except Exception:  # noqa: BLE001 - a bad record must never lose the batch
                        result.failed += 1
                        log.exception("%s could not be attributed; forwarded masked and otherwise unchanged",
                                      "span" if spans else "log record")
                    if masked:
                        edits.append((start, end, view.SerializeToString()))
                    elif view.added:
                        at = places[i][0]
                        edits.append((at, at, view.added))
                first += count
            self._data = b""
            if self.detect:
                result.events = self.engine.take_events()
        return self._views.splice(signal, data, edits), result

    def scrub(self, request, data: bytes | None = None) -> None:
        """Masks a whole request with the protobuf runtime: credentials, forged ``nhi.*``
        attributes, fields too new to be checked. What a host calls when processing failed
        (without ``data``: the request may have changed since it arrived)."""
        self.redactor.request(request, data)
        request.DiscardUnknownFields()

    def process_metrics(self, request, data: bytes | None = None) -> None:
        """Metrics are only masked: no identity is resolved on them."""
        with self._lock:
            self._mask("metrics", request, data, 0)
            self._data = b""

    # -- traces ------------------------------------------------------------------------------
    # process_traces and process_logs repeat one loop shape on purpose: a shared loop over
    # generators measured about 1 µs more per record on this hot path (benchmarks/throughput.py).
    def process_traces(self, request: ExportTraceServiceRequest, data: bytes | None = None,
                       learn: bool = True, scan: Scan | None = None) -> BatchResult:
        """``data``: the request's wire bytes when the host has them (saves serializing it again).
        ``learn`` False: a batch the engine has seen before (a sender's retry) is enriched with
        current trust but not learnt from again. ``scan``: what the native reader already found
        in ``data``, when the spliced path declined the request."""
        result = BatchResult()
        with self._lock, self.engine.lock:
            self._learn = learn
            self._latest_ns = time.time_ns() + self._skew_ns  # later event times are the sender's, not ours
            reads = self._mask("traces", request, data, sum(
                len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans), scan)
            for rs in request.resource_spans:
                res = read_attributes(rs.resource.attributes)[0]
                by_resource: dict = {}
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        read = next(reads) if reads is not None else None
                        if read is not None and (read[1] or read[2] & DIRTY):
                            # outside the guard: a record that cannot be masked fails the batch
                            read = self._mask_record(span, read)
                        result.records += 1
                        try:
                            self._one_span(span, read, res, by_resource, result)
                        except Exception:  # noqa: BLE001 - a bad record must never lose the batch
                            result.failed += 1
                            log.exception("span could not be attributed; forwarded masked and otherwise unchanged")
            self._data = b""
            if self.detect:
                result.events = self.engine.take_events()
        return result

    def _one_span(self, span, read: tuple | None, res: dict, by_resource: dict, result: BatchResult) -> None:
        rec = read[0] if read is not None else read_attributes(span.attributes, self._keys)[0]
        kind = span.kind
        if rec.keys().isdisjoint(IDENTITY_KEYS):
            key = kind == SERVER
            identity = by_resource.get(key, _MISSING)
            if identity is _MISSING:
                identity = by_resource[key] = self.resolver.resolve(rec, res, is_span=True, span_kind=kind)
        else:
            identity = self.resolver.resolve(rec, res, is_span=True, span_kind=kind)
        if identity is None:
            result.unattributed += 1
            return
        result.attributed += 1
        if not self.detect:
            enrich(span, SPAN_ATTRIBUTES_FIELD, identity, NEUTRAL_VERDICT)
            return
        t = span.start_time_unix_nano or span.end_time_unix_nano
        skewed = t > self._latest_ns
        obs = make_observation(  # positional: a keyword call costs more, once per record
            identity, rec, res,
            span_signal(rec, res),                                   # signal
            span_action(rec, span.name),                             # action
            self._latest_ns if skewed else t,                        # time_ns
            span_outcome(rec, span.status.code),                     # outcome
            kind == SERVER,                                          # server_span
            span.trace_id,
            span.span_id,
        )
        enrich(span, SPAN_ATTRIBUTES_FIELD, identity, self.engine.observe_unlocked(obs) if self._learn
               else self.engine.peek(identity.id, obs.time_ns), obs.details.get("nhi.credential.id"), None, skewed)

    def use_catalog(self, catalog) -> None:
        """A reloaded catalog: identities resolve through it from the next batch on."""
        with self._lock:
            self.catalog = self.engine.catalog = catalog
            self.resolver.use_catalog(catalog)

    # -- logs --------------------------------------------------------------------------------
    def process_logs(self, request: ExportLogsServiceRequest, data: bytes | None = None,
                     learn: bool = True, scan: Scan | None = None) -> BatchResult:
        result = BatchResult()
        with self._lock, self.engine.lock:
            self._learn = learn
            self._latest_ns = time.time_ns() + self._skew_ns  # later event times are the sender's, not ours
            reads = self._mask("logs", request, data, sum(
                len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs), scan)
            for rl in request.resource_logs:
                res = read_attributes(rl.resource.attributes)[0]
                by_resource: dict = {}
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        read = next(reads) if reads is not None else None
                        if read is not None and (read[1] or read[2] & DIRTY):
                            # outside the guard: a record that cannot be masked fails the batch
                            read = self._mask_record(record, read)
                        result.records += 1
                        try:
                            self._one_log(record, read, res, by_resource, result)
                        except Exception:  # noqa: BLE001
                            result.failed += 1
                            log.exception("log record could not be attributed; forwarded masked and otherwise unchanged")
            self._data = b""
            if self.detect:
                result.events = self.engine.take_events()
        return result

    def _one_log(self, record, read: tuple | None, res: dict, by_resource: dict, result: BatchResult) -> None:
        rec = read[0] if read is not None else read_attributes(record.attributes, self._keys)[0]
        if rec.keys().isdisjoint(IDENTITY_KEYS) and (
                read[2] & OBJECT_BODY if read is not None else looks_like_object(record)):
            vendor = read_vendor_record(record, self._data, read[4]) if read is not None else read_vendor_record(record)
            if vendor is not None:
                self._one_vendor(record, vendor, rec, result)
                return
        event_name = record.event_name or rec.get("event.name") or None
        action = log_action(rec, event_name)
        category = rec.get("event.category")
        audit = category in AUDIT_CATEGORIES or is_cloudtrail(rec)
        consent = action == CONSENT_ACTION
        if rec.keys().isdisjoint(IDENTITY_KEYS):
            key = (audit, consent)
            identity = by_resource.get(key, _MISSING)
            if identity is _MISSING:
                identity = by_resource[key] = self.resolver.resolve(
                    rec, res, is_span=False, is_consent=consent, audit_log=audit)
        else:
            identity = self.resolver.resolve(rec, res, is_span=False, is_consent=consent, audit_log=audit)
        if identity is None:
            result.unattributed += 1
            return
        result.attributed += 1
        if not self.detect:
            enrich(record, LOG_ATTRIBUTES_FIELD, identity, NEUTRAL_VERDICT)
            return
        t = record.time_unix_nano or record.observed_time_unix_nano
        skewed = t > self._latest_ns
        obs = make_observation(
            identity, rec, res,
            log_signal(rec, res, event_name),                        # signal
            action,
            self._latest_ns if skewed else t,                        # time_ns
            log_outcome(rec),                                        # outcome
            False,                                                   # server_span
            record.trace_id,
            record.span_id,
        )
        enrich(record, LOG_ATTRIBUTES_FIELD, identity, self.engine.observe_unlocked(obs) if self._learn
               else self.engine.peek(identity.id, obs.time_ns), obs.details.get("nhi.credential.id"), None, skewed)

    def _one_vendor(self, record, vendor, rec: dict, result: BatchResult) -> None:
        """A log record whose body a vendor profile read: attributed and observed from what the
        profile mapped (its event time, its identity), forwarded with only ``nhi.*`` added."""
        if not isinstance(vendor, Mapped):
            key = f"{vendor.source}: {vendor.reason}"[:200]
            if key in result.vendor_skipped or len(result.vendor_skipped) < 64:
                result.vendor_skipped[key] = result.vendor_skipped.get(key, 0) + 1
            result.unattributed += 1
            return
        result.vendor[vendor.source] = result.vendor.get(vendor.source, 0) + 1
        attrs = {**rec, **vendor.attrs} if rec else vendor.attrs
        issued = vendor.issued
        if issued is not None:
            attrs["nhi.credential.created"] = issued.credential_id
            attrs["nhi.credential.issued_to"] = issued.issued_to
            attrs["nhi.credential.issued_by"] = issued.issued_by
        if vendor.related:  # named by the same format rules as the actor
            attrs["nhi.identity.related"] = ",".join(self.resolver.by_value(principal, "nhi.identity.related").id
                                                     for principal in vendor.related)
        if vendor.record_id:
            attrs["nhi.record.id"] = vendor.record_id
        action = log_action(attrs, None)
        hint = vendor.identity
        if hint is not None:
            identity = self.resolver.identity(hint.kind, hint.principal, hint.source, hint.group, hint.owner)
        else:  # the contract's rules, on what the profile mapped; the shipper is not the actor
            identity = self.resolver.resolve(attrs, _NO_RESOURCE, is_span=False,
                                             is_consent=action == CONSENT_ACTION, audit_log=True)
        if identity is None:
            result.unattributed += 1
            return
        result.attributed += 1
        for_whom = attrs.get("nhi.identity.on_behalf_of")
        if not self.detect:
            enrich(record, LOG_ATTRIBUTES_FIELD, identity, NEUTRAL_VERDICT, attrs.get("nhi.credential.id"), for_whom)
            return
        skewed = vendor.time_ns > self._latest_ns
        obs = make_observation(identity, attrs, _NO_RESOURCE, log_signal(attrs, _NO_RESOURCE, None), action,
                               self._latest_ns if skewed else vendor.time_ns, log_outcome(attrs), False,
                               record.trace_id, record.span_id)
        enrich(record, LOG_ATTRIBUTES_FIELD, identity, self.engine.observe_unlocked(obs) if self._learn
               else self.engine.peek(identity.id, obs.time_ns), obs.details.get("nhi.credential.id"), for_whom,
               skewed)


_NO_RESOURCE: dict = {}
_ENTRIES = {"traces": "resource_spans", "logs": "resource_logs", "metrics": "resource_metrics"}
