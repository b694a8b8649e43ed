"""The ``nhi.*`` attributes written on every record the processor can attribute (TELEMETRY.md
section 3), appended as pre-encoded wire bytes.

Merging bytes into a record appends the attributes (protobuf concatenates repeated fields): one
C call instead of copying each KeyValue, about 1 µs less per record. The identity part is built
once per identity and cached; only the trust score and anomalies vary per record.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..model import NEUTRAL_VERDICT, Identity, Verdict

# The attributes this processor writes. An upstream copy of any of them is dropped so that a
# sender cannot pre-set its own identity or trust.
# nhi.route.key is what a scale-out front Collector adds to route an identity to one replica
# (collector-config-scaleout.yaml); it is dropped too, so it never reaches the backend.
OUR_ATTRIBUTES = frozenset({"nhi.identity.id", "nhi.identity.kind", "nhi.identity.source",
                            "nhi.identity.owner", "nhi.trust.score", "nhi.anomaly", "nhi.convergence.id",
                            "nhi.credential.id", "nhi.route.key",
                            # what input profiles hand the engine (issuance, targets, related
                            # identities): never taken from a sender, whose copies are dropped
                            "nhi.credential.created", "nhi.credential.issued_to", "nhi.credential.issued_by",
                            "nhi.target.identity", "nhi.identity.related", "nhi.identity.alias",
                            "nhi.identity.on_behalf_of", "nhi.time.skewed"})
# Field numbers of ``attributes`` in Span and LogRecord (opentelemetry/proto/*/v1/*.proto).
SPAN_ATTRIBUTES_FIELD = 9
LOG_ATTRIBUTES_FIELD = 6
_DOUBLE = struct.Struct("<d")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_NAMES: dict[str, bytes] = {}  # attribute key -> its encoded KeyValue.key field (the keys written here)


def string_attribute(key: str, value: str, field_number: int) -> bytes:
    """One ``key = value`` string attribute as the repeated ``attributes`` field (``field_number``)
    of a span or log record: KeyValue.key = 1, KeyValue.value = 2, AnyValue.string_value = 1.

    Encoded by hand rather than through KeyValue messages, whose building, serializing and
    joining cost about 100,000 instructions per new identity (callgrind): paid on every record of
    a stream whose identities are mostly new (cold start, one-off API keys), and per record for
    the credential id. Attributes below 128 bytes, nearly all, take one concatenation."""
    name = _NAMES.get(key)
    if name is None:
        name = _field(1, key.encode("utf-8", "surrogatepass")) if key else b""  # proto3 leaves an empty key out
        if len(_NAMES) < 64:
            _NAMES[key] = name
    raw = value.encode("utf-8", "surrogatepass")
    n = len(raw)
    size = len(name) + n + 4  # the key, then 0x12, AnyValue's length, 0x0A, the value's length, the value
    if size < 128:  # every length fits one byte
        return bytes((field_number << 3 | 2, size)) + name + bytes((0x12, n + 2, 0x0A, n)) + raw
    return _field(field_number, name + _field(2, _field(1, raw)))


# nhi.trust.score as wire bytes up to its double, whose 8 little-endian bytes end the encoding:
# KeyValue{key, value: AnyValue{double_value = 4 (fixed64)}}.
_TRUST_KEY = _field(1, b"nhi.trust.score")
_TRUST_HEAD = {n: _varint(n << 3 | 2) + _varint(len(_TRUST_KEY) + 11) + _TRUST_KEY + b"\x12\x09\x21"
               for n in (SPAN_ATTRIBUTES_FIELD, LOG_ATTRIBUTES_FIELD)}
_TRUST_ONE = {n: head + _DOUBLE.pack(1.0) for n, head in _TRUST_HEAD.items()}


@dataclass(frozen=True, slots=True)
class IdentityAttributes:
    """The ``nhi.identity.*`` attributes of one identity, built once and appended to records."""

    identity: Identity
    trusted: dict[int, bytes]  # field number -> nhi.identity.* plus nhi.trust.score = 1.0, wire-encoded
    plain: dict[int, bytes]    # field number -> nhi.identity.* only, wire-encoded


_IDENTITY_ATTRIBUTES: dict[str, IdentityAttributes] = {}


def identity_attributes(identity: Identity) -> IdentityAttributes:
    found = _IDENTITY_ATTRIBUTES.get(identity.id)
    if found is None or (found.identity is not identity and found.identity != identity):
        attributes = [("nhi.identity.id", identity.id), ("nhi.identity.kind", identity.kind),
                      ("nhi.identity.source", identity.source)]
        if identity.owner:
            attributes.append(("nhi.identity.owner", identity.owner))
        plain = {}
        for n in (SPAN_ATTRIBUTES_FIELD, LOG_ATTRIBUTES_FIELD):
            wire = b""
            for key, value in attributes:
                wire += string_attribute(key, value, n)
            plain[n] = wire
        found = IdentityAttributes(identity, {n: wire + _TRUST_ONE[n] for n, wire in plain.items()}, plain)
        if len(_IDENTITY_ATTRIBUTES) > 65_536:
            _IDENTITY_ATTRIBUTES.clear()
        _IDENTITY_ATTRIBUTES[identity.id] = found
    return found


def enrich(record, field_number: int, identity: Identity, verdict: Verdict, credential: str | None = None,
           on_behalf_of: str | None = None, skewed: bool = False) -> None:
    """Append ``nhi.*`` attributes to a span (field 9) or log record (field 6): ``enrichment``
    merged into it (a protobuf record, or a record view of the spliced path)."""
    record.MergeFromString(enrichment(field_number, identity, verdict, credential, on_behalf_of, skewed))


def enrichment(field_number: int, identity: Identity, verdict: Verdict, credential: str | None = None,
               on_behalf_of: str | None = None, skewed: bool = False) -> bytes:
    """The ``nhi.*`` attributes of one record as the wire bytes of its repeated ``attributes``
    field (``field_number``); ``credential``: the ``nhi.credential.id`` the record used, when it
    names one; ``on_behalf_of``: the user an app acted for, when the record says so; ``skewed``:
    its time was ahead of its arrival by more than the allowed skew and was clamped."""
    cached = identity_attributes(identity)
    tail = _credential_wire(credential, field_number) if credential else b""
    if on_behalf_of:
        tail += string_attribute("nhi.identity.on_behalf_of", on_behalf_of, field_number)
    if skewed:
        tail += _SKEWED[field_number]
    if verdict is NEUTRAL_VERDICT or (verdict.trust_score == 1.0 and not verdict.anomalies
                                      and not verdict.convergence_id):
        return cached.trusted[field_number] + tail if tail else cached.trusted[field_number]
    wire = cached.plain[field_number] + _TRUST_HEAD[field_number] + _DOUBLE.pack(verdict.trust_score) + tail
    if verdict.anomalies:
        values = b"".join(_field(1, _field(1, name.encode("utf-8", "surrogatepass"))) for name in verdict.anomalies)
        wire += _field(field_number, _ANOMALY_KEY + _field(2, _field(5, values)))
    if verdict.convergence_id:
        wire += string_attribute("nhi.convergence.id", verdict.convergence_id, field_number)
    return wire


_ANOMALY_KEY = _field(1, b"nhi.anomaly")  # KeyValue.key; its value: AnyValue.array_value (5) of strings


# nhi.time.skewed = true: KeyValue.key = 1, KeyValue.value = 2 holding AnyValue.bool_value = 2.
_SKEWED = {n: _field(n, _field(1, b"nhi.time.skewed") + _field(2, b"\x10\x01"))
           for n in (SPAN_ATTRIBUTES_FIELD, LOG_ATTRIBUTES_FIELD)}


def _credential_wire(credential: str, field_number: int) -> bytes:
    """``nhi.credential.id`` = ``credential`` as attribute wire bytes: appended in the same merge as
    the identity's, instead of building a KeyValue object per record."""
    return string_attribute("nhi.credential.id", credential, field_number)
