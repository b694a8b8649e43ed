"""Reading a record's attributes: only the keys that matter, decoded once, as Python values.

What ``read_attributes`` does with a key is one dict look-up: 1 decode it, 2 decode it and note
that the record carries a credential (to be masked), 3 note a forged ``nhi.*`` attribute (to be
dropped before enrichment). Every other key is never decoded.

The native core reads the same off the request's wire bytes (``native/src/read.rs``), several
times faster than iterating through the protobuf runtime, and in the same pass says which records
and resource entries hold anything to mask and whether any field is unknown; ``read_attributes``
is the reference and the fallback, and ``tests/pipeline/test_wire.py`` checks that the two agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor as F
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .._compiled import native_module
from ..anyvalue import to_python
from ..identity.credentials import CREDENTIAL_ATTRIBUTES
from ..identity.rules import IDENTITY_KEYS
from ..observe.record import RESOLUTION_CONTEXT_KEYS, WANTED
from ..outputs.enrich import OUR_ATTRIBUTES

log = logging.getLogger(__name__)

DECODE, CREDENTIAL, OURS = 1, 2, 3
DIRTY, UNKNOWN, ELSEWHERE, OBJECT_BODY = 1, 2, 4, 8  # flags of a record read by the native reader
REQUESTS = {"traces": ExportTraceServiceRequest, "logs": ExportLogsServiceRequest,
            "metrics": ExportMetricsServiceRequest}


def key_actions(wanted) -> dict[str, int]:
    table = {key: DECODE for key in wanted}
    table.update({key: CREDENTIAL for key in CREDENTIAL_ATTRIBUTES})
    table.update({key: OURS for key in OUR_ATTRIBUTES})
    return table


# With detection on, everything the observation needs; with it off, only what resolution reads.
KEYS_FOR_DETECTION = key_actions(WANTED)
KEYS_FOR_RESOLUTION = key_actions(IDENTITY_KEYS | RESOLUTION_CONTEXT_KEYS)

wire = native_module()
if wire is not None:
    from ..outputs.redact import trigger_words

    wire.configure_triggers(*trigger_words())  # the native triggers from the same table as TRIGGER


HAS_CREDENTIAL, HAS_OURS = 1, 2  # bits of read_attributes' second value


def read_attributes(attributes, table: dict[str, int] = KEYS_FOR_DETECTION) -> tuple[dict, int]:
    """The wanted attributes as Python values; and which special keys are present (HAS_CREDENTIAL,
    HAS_OURS: a forged copy of an attribute this processor writes).

    A later duplicate key wins, as it does for the protobuf-to-dict readers downstream.
    """
    out = {}
    special = 0
    action_of = table.get
    for kv in attributes:
        key = kv.key
        action = action_of(key)
        if action is None:
            continue
        if action == OURS:
            special |= HAS_OURS
            continue
        value = kv.value
        text = value.string_value
        out[key] = text if text else to_python(value)
        if action == CREDENTIAL:
            special |= HAS_CREDENTIAL
    return out, special


# -- the native reader's schema -----------------------------------------------------------------
_VARINT = {F.TYPE_INT32, F.TYPE_INT64, F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_SINT32, F.TYPE_SINT64, F.TYPE_BOOL,
           F.TYPE_ENUM}
_FIXED64 = {F.TYPE_FIXED64, F.TYPE_SFIXED64, F.TYPE_DOUBLE}
K_SCALAR, K_SKIP, K_TEXT, K_MSG, K_KEY, K_BYTES = 1, 2, 3, 4, 5, 6
_ANYVALUE = "opentelemetry.proto.common.v1.AnyValue"
_KEYVALUE = "opentelemetry.proto.common.v1.KeyValue"


def wire_schema(request_cls) -> dict:
    """Arguments for the native ``Schema``: every message type reachable from the request, each field's
    kind and wire type. Strings are checked for secrets (and for UTF-8), KeyValue keys classified,
    AnyValue bytes checked like strings, other bytes (trace and span ids) skipped, messages
    walked."""
    types: list[list[tuple]] = []
    index: dict[str, int] = {}
    pending = [request_cls.DESCRIPTOR]
    while pending:
        descriptor = pending.pop(0)
        if descriptor.full_name in index:
            continue
        index[descriptor.full_name] = len(types)
        types.append([])
        for fd in descriptor.fields:
            if fd.type == F.TYPE_MESSAGE:
                pending.append(fd.message_type)
    for descriptor_name, i in index.items():
        descriptor = _descriptor(request_cls.DESCRIPTOR, descriptor_name)
        for fd in descriptor.fields:
            packed_alt = 2 if fd.is_repeated else 255
            if fd.type == F.TYPE_MESSAGE:
                types[i].append((fd.number, K_MSG, 2, 255, index[fd.message_type.full_name]))
            elif fd.type == F.TYPE_STRING:
                kind = K_KEY if (descriptor.full_name == _KEYVALUE and fd.name == "key") else K_TEXT
                types[i].append((fd.number, kind, 2, 255, 0))
            elif fd.type == F.TYPE_BYTES:
                types[i].append((fd.number, K_BYTES if descriptor.full_name == _ANYVALUE else K_SKIP, 2, 255, 0))
            else:
                wire_type = 0 if fd.type in _VARINT else 1 if fd.type in _FIXED64 else 5
                types[i].append((fd.number, K_SCALAR, wire_type, packed_alt, 0))
    request = request_cls.DESCRIPTOR
    entry = request.fields[0].message_type
    scopes = next(fd for fd in entry.fields if fd.name.startswith("scope_"))
    records = next((fd for fd in scopes.message_type.fields if fd.name in ("spans", "log_records")), None)
    record = records.message_type if records else None
    return dict(types=types, entry=index[entry.full_name], scope=index[scopes.message_type.full_name],
                record=index[record.full_name] if record else -1, scopes_field=scopes.number,
                records_field=records.number if records else -1,
                attributes_field=record.fields_by_name["attributes"].number if record else -1,
                anyvalue=index[_ANYVALUE],
                body_field=record.fields_by_name["body"].number if record and "body" in record.fields_by_name else 0)


def _descriptor(root, full_name: str):
    seen, pending = set(), [root]
    while pending:
        d = pending.pop()
        if d.full_name == full_name:
            return d
        seen.add(d.full_name)
        pending += [fd.message_type for fd in d.fields if fd.type == F.TYPE_MESSAGE
                    and fd.message_type.full_name not in seen]
    raise KeyError(full_name)


@dataclass
class Scan:
    """What the native reader found in one request."""

    reads: list | None          # per record: (wanted attributes, special, flags, dirty attribute
                                # indices or None, where a map body is in the request's bytes or
                                # -1); None for metrics
    dirty_entries: list[int]    # resource entries whose own parts hold something to mask
    unknown: bool               # a field the schema does not know somewhere in the request


class RequestReader:
    """The native reader for one attribute table and one key classifier; ``scan`` is None where
    the native core is absent or cannot read a request exactly as protobuf does."""

    def __init__(self, table: dict[str, int], classify_key):
        self.table = table
        self.available = wire is not None
        if self.available:
            self.suspicious = wire.suspicious
            self.wire_table = wire.KeyTable(table)  # also read by views.ViewReader
            self.key_classifier = wire.KeyClassifier(classify_key)
            self._schemas = {signal: wire.Schema(**wire_schema(cls)) for signal, cls in REQUESTS.items()}

    def schema(self, signal: str):
        return self._schemas[signal]

    def scan(self, signal: str, data: bytes, records: int) -> Scan | None:
        if not self.available:
            return None
        schema = self._schemas[signal]
        try:
            if signal == "metrics":
                dirty, unknown = wire.scan_request(data, schema, self.key_classifier)
                return Scan(None, dirty, unknown)
            reads, dirty, unknown = wire.read_request(data, schema, self.wire_table, self.key_classifier)
        except ValueError as exc:  # protobuf took it, so it is ours to read another way
            log.debug("native reader declined a %s request (%s); reading it with protobuf", signal, exc)
            return None
        return self.matching(Scan(reads, dirty, unknown), records)

    @staticmethod
    def matching(scan: Scan, records: int) -> Scan | None:
        """``scan``, when it holds as many records as the parsed request: never pair a record with
        another's attributes."""
        if scan.reads is not None and len(scan.reads) != records:
            log.error("wire reader found %d records, the request has %d; reading them one by one",
                      len(scan.reads), records)
            return None
        return scan
