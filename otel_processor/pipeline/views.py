"""Records read off the wire, for the spliced path: no protobuf object is built for the request.

The native reader gives every record's wanted attributes and the few fields the batch loop reads
(a span's name, kind, times, ids and status code; a log record's times, event name, ids and
where its body is). ``SpanView`` and ``LogView`` carry them under the protobuf field names, so
the loop runs unchanged on them; what the loop would merge into a record (its ``nhi.*``
attributes, wire-encoded) is kept and then written into the request's own bytes by the native
``splice``. A record with something to mask is parsed alone, masked as on the protobuf path and
put back whole.

A request with a field this build does not know, something to mask outside its records, or
anything the protobuf runtime would merge takes the protobuf path (``None`` here).
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from .attributes import UNKNOWN, KEYS_FOR_DETECTION, Scan, wire

# Flags that send a request to the protobuf path: a field this build does not know, a body or
# status given twice (protobuf merges the two).
MERGED = 16
NOT_SPLICEABLE = UNKNOWN | MERGED
# Deeper than this, the protobuf runtime may refuse what the native reader accepts (its limit is
# 100 nested messages): such a request is parsed, and refused if it must be.
MAX_SPLICED_DEPTH = 64
INT32, FIXED64, STRING, BYTES, MESSAGE, INT32_IN = 1, 2, 3, 4, 5, 6


def _number(message, name: str) -> int:
    return message.DESCRIPTOR.fields_by_name[name].number


SPAN_FIELDS = (
    (_number(Span, "name"), STRING, 0),
    (_number(Span, "kind"), INT32, 0),
    (_number(Span, "start_time_unix_nano"), FIXED64, 0),
    (_number(Span, "end_time_unix_nano"), FIXED64, 0),
    (_number(Span, "trace_id"), BYTES, 0),
    (_number(Span, "span_id"), BYTES, 0),
    (_number(Span, "status"), INT32_IN, _number(Status, "code")),
)
LOG_FIELDS = (
    (_number(LogRecord, "event_name"), STRING, 0),
    (_number(LogRecord, "time_unix_nano"), FIXED64, 0),
    (_number(LogRecord, "observed_time_unix_nano"), FIXED64, 0),
    (_number(LogRecord, "trace_id"), BYTES, 0),
    (_number(LogRecord, "span_id"), BYTES, 0),
    (_number(LogRecord, "body"), MESSAGE, 0),
)


class _Status:
    __slots__ = ("code",)

    def __init__(self, code: int):
        self.code = code


_STATUSES = {code: _Status(code) for code in range(3)}


class SpanView:
    """A span as the batch loop reads it; ``MergeFromString`` keeps the ``nhi.*`` bytes."""

    __slots__ = ("name", "kind", "start_time_unix_nano", "end_time_unix_nano", "trace_id", "span_id", "status",
                 "added")

    def __init__(self, captured: tuple):
        (self.name, self.kind, self.start_time_unix_nano, self.end_time_unix_nano, self.trace_id, self.span_id,
         code) = captured
        self.status = _STATUSES.get(code) or _Status(code)
        self.added = b""

    def MergeFromString(self, data: bytes) -> None:  # noqa: N802 - protobuf's name
        self.added += data


class LogView:
    """A log record as the batch loop reads it; its body is parsed only when asked for (a JSON
    text body; a map body is read off the request's bytes by ``vendor.body_object``)."""

    __slots__ = ("event_name", "time_unix_nano", "observed_time_unix_nano", "trace_id", "span_id", "_body_at",
                 "_data", "added")

    def __init__(self, captured: tuple, data: bytes):
        (self.event_name, self.time_unix_nano, self.observed_time_unix_nano, self.trace_id, self.span_id,
         self._body_at) = captured
        self._data = data
        self.added = b""

    @property
    def body(self) -> AnyValue:
        if self._body_at is None:
            return AnyValue()
        start, end = self._body_at
        return AnyValue.FromString(self._data[start:end])

    def MergeFromString(self, data: bytes) -> None:  # noqa: N802 - protobuf's name
        self.added += data


@dataclass
class Views:
    """One request, read for the spliced path."""

    entries: list[tuple[dict, int]]      # per resource entry: its resource's wanted attributes, its record count
    records: list[tuple]                 # per record: as ``RequestReader.scan`` reads it
    places: list[tuple[int, int, int]]   # per record: where nhi.* attributes go, where its bytes start and end
    captured: list[tuple]                # per record: the fields of SPAN_FIELDS or LOG_FIELDS


class ViewReader:
    """The native reader's views of a request, with the record fields of both signals."""

    def __init__(self, reader):
        self.reader = reader
        self.available = wire is not None and reader.available
        if self.available:
            self._fields = {"traces": wire.RecordFields(list(SPAN_FIELDS)), "logs": wire.RecordFields(list(LOG_FIELDS))}
            self._resource_table = wire.KeyTable(KEYS_FOR_DETECTION)

    def read(self, signal: str, data: bytes) -> Views | Scan | None:
        """The request's views; or, when it must take the protobuf path, what the reader found
        (``RequestReader.scan``'s answer, so that path does not read it again), or None when the
        reader could not read it."""
        if not self.available or signal not in self._fields:
            return None
        reader = self.reader
        try:
            entries, records, places, captured, dirty_entries, unknown, deepest = wire.read_views(
                data, reader.schema(signal), reader.wire_table, self._resource_table, reader.key_classifier,
                self._fields[signal])
        except Exception:  # noqa: BLE001 - not UTF-8, merged values, bytes it cannot walk: protobuf decides
            return None
        if unknown or dirty_entries or deepest > MAX_SPLICED_DEPTH or any(
                record[2] & NOT_SPLICEABLE for record in records):
            return Scan(records, dirty_entries, unknown)
        return Views(entries, records, places, captured)

    def splice(self, signal: str, data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
        return wire.splice(data, self.reader.schema(signal), edits)
