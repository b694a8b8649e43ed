"""What a request may cost before it is trusted, in the spirit of the Collector's
``memory_limiter``: a byte budget for everything requests hold at once, a cap on records per
request counted off the wire before the protobuf runtime builds them, and a first-come gate so
that one sender's large request cannot hold another's export for longer than one chunk.

Why count off the wire: a parsed request costs about 130 bytes per record however small the
record is on the wire (2 bytes for an empty one), so 15 KB of gzip can become 7.8 million records
and a gigabyte. The count stops at the cap, so refusing costs what the cap allows.
"""

from __future__ import annotations

import threading
from collections import deque

from ...pipeline.attributes import wire

# Bytes a request is expected to hold while processed: its wire bytes several times over
# (parsed strings, the enriched copy, the forwarded serialization) and a fixed cost per record.
BYTES_FACTOR = 4
PER_RECORD = 160
# Records per request at most, per signal's path to them: field numbers from the request down to
# the records (resource entries 1, scope entries 2, records 2), as the OTLP protos define them.
_RECORD_PATH = (1, 2, 2)


class Overloaded(Exception):
    """The budget cannot take this request now: refused with a retry hint."""


def estimate(data_len: int, records: int) -> int:
    return BYTES_FACTOR * data_len + PER_RECORD * records


def count_records(data: bytes, stop_after: int) -> int:
    """Spans, log records or metrics in an OTLP export request, read off its wire bytes; stops
    counting past ``stop_after``. A request the wire reader cannot walk counts 0: the protobuf
    runtime then says what is wrong with it."""
    if wire is not None:
        return wire.count_entries(data, _RECORD_PATH, stop_after)
    return _count(memoryview(data), 0, len(data), 0, stop_after)


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    return -1, end


def _count(buf, pos: int, end: int, depth: int, stop_after: int) -> int:
    found = 0
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        if tag < 0:
            return found
        kind = tag & 7
        if kind == 0:
            _, pos = _varint(buf, pos, end)
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        elif kind == 2:
            length, pos = _varint(buf, pos, end)
            if length < 0 or pos + length > end:
                return found
            if tag >> 3 == _RECORD_PATH[depth]:
                if depth == len(_RECORD_PATH) - 1:
                    found += 1
                else:
                    found += _count(buf, pos, pos + length, depth + 1, stop_after - found)
                if found > stop_after:
                    return found
            pos += length
        else:
            return found
    return found


class MemoryBudget:
    """Bytes held by requests at once; ``reserve`` refuses past the limit rather than wait."""

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.held = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit and self.held > 0:
                return False  # one request alone may use the whole budget, never more than one
            self.held += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self.held = max(0, self.held - n)


class FairGate:
    """One batch part at a time, in the order they asked: a request split into parts queues each
    part behind whoever is already waiting, so a waiting export waits for one part, not all."""

    def __init__(self):
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._busy = False

    def __enter__(self) -> "FairGate":
        me = object()
        with self._cond:
            self._queue.append(me)
            while self._busy or self._queue[0] is not me:
                self._cond.wait()
            self._queue.popleft()
            self._busy = True
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()


def parts(request, entries_field: str, scopes_field: str, records_field: str, size: int) -> list:
    """``request`` as requests of at most ``size`` records each, in order, resources and scopes
    repeated where a part boundary falls inside them."""
    out: list = []
    current, count = None, 0

    def new_part():
        nonlocal current, count
        current, count = type(request)(), 0
        out.append(current)

    for entry in getattr(request, entries_field):
        part_entry = None
        scopes = getattr(entry, scopes_field)
        if not scopes:
            if current is None:
                new_part()
            getattr(current, entries_field).add().CopyFrom(entry)
            continue
        for scope in scopes:
            records = getattr(scope, records_field)
            start = 0
            while True:
                if current is None or count >= size:
                    new_part()
                    part_entry = None
                if part_entry is None:
                    part_entry = getattr(current, entries_field).add()
                    part_entry.resource.CopyFrom(entry.resource)
                    part_entry.schema_url = entry.schema_url
                take = records[start:start + size - count]
                part_scope = getattr(part_entry, scopes_field).add()
                part_scope.scope.CopyFrom(scope.scope)
                part_scope.schema_url = scope.schema_url
                getattr(part_scope, records_field).extend(take)
                count += len(take)
                start += len(take)
                if start >= len(records):
                    break
    return out
