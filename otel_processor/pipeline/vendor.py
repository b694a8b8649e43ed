"""Log records whose body is a vendor audit record (CloudTrail, Entra ID, Microsoft 365, GitHub,
Kubernetes, Google Cloud): the body read with the input profile its content names.

That is how the Collector delivers such records: the filelog receiver with a JSON parser
(``parse_to: body``), the Azure Event Hub, Google Pub/Sub and AWS S3 receivers leave the vendor's
JSON as the body, a map or a JSON string. The record itself is forwarded unchanged: what the
profile maps is only what the processor reads.

Bounded: a body larger than ``MAX_BODY`` bytes is not parsed (no audit record is that large;
the record is forwarded, counted as unattributed). JSON nesting is bounded by the parser.
"""

from __future__ import annotations

import orjson

from ..anyvalue import to_python
from ..inputs.dispatch import map_with, profile_of
from ..inputs.record import Mapped, Skipped, Unusable
from .attributes import wire

MAX_BODY = 1 << 20


def looks_like_object(record) -> bool:
    """The pure-Python twin of the native reader's OBJECT_BODY flag."""
    body = record.body
    kind = body.WhichOneof("value")
    if kind == "kvlist_value":
        return True
    return kind == "string_value" and body.string_value.lstrip()[:1] == "{"


def body_object(record, data: bytes | None = None, body_at: int = -1) -> dict | None:
    """The body as a dict, when it is a map or a JSON object of reasonable size. ``data`` and
    ``body_at``: the request's wire bytes and where the native reader found this record's map
    body in them, which spares serializing the body again to read it."""
    if body_at >= 0 and data and wire is not None:  # a map body, read off the request's bytes
        try:
            value = wire.body_value(data, body_at, MAX_BODY)
            return value if isinstance(value, dict) else None
        except wire.ReadAsPython:  # bytes protobuf merges: read what it made of them
            pass
    body = record.body
    kind = body.WhichOneof("value")
    if kind == "kvlist_value":
        if wire is not None:  # one native pass over the body's bytes instead of a wrapper per value
            serialized = body.SerializeToString()
            return wire.any_value(serialized) if len(serialized) <= MAX_BODY else None
        return to_python(body) if body.ByteSize() <= MAX_BODY else None
    if kind == "string_value":
        text = body.string_value
        if len(text) > MAX_BODY:
            return None
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def read_vendor_record(record, data: bytes | None = None, body_at: int = -1) -> Mapped | Skipped | None:
    """The profile's reading of a record's body; None when the body is no vendor record of ours.
    A record the profile cannot use (no time anywhere, not even the log record's) is Skipped."""
    body = body_object(record, data, body_at)
    if body is None:
        return None
    name = profile_of(body)
    if name is None:
        return None
    fallback = record.time_unix_nano or record.observed_time_unix_nano or None
    try:
        return map_with(name, body, fallback)
    except Unusable as exc:
        return Skipped(name, str(exc))
