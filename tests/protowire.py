"""A minimal protobuf wire rewriter for tests: insert unknown fields at any depth of a message.

It reads a serialized message with its descriptor, recurses into every known sub-message field,
and puts extra fields (numbers the message type does not use, of a chosen wire type, groups with
content included) at random places among the fields, re-encoding the lengths around them.
"""

from __future__ import annotations

import random

from google.protobuf.descriptor import FieldDescriptor


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, int, bytes]]:
    """(field number, wire type, raw value bytes) of each field; no groups expected in the input."""
    out, pos = [], 0
    while pos < len(data):
        tag, pos = read_varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        start = pos
        if wire_type == 0:
            _, pos = read_varint(data, pos)
            out.append((number, wire_type, data[start:pos]))
        elif wire_type == 1:
            pos += 8
            out.append((number, wire_type, data[start:pos]))
        elif wire_type == 5:
            pos += 4
            out.append((number, wire_type, data[start:pos]))
        elif wire_type == 2:
            length, pos = read_varint(data, pos)
            out.append((number, wire_type, data[pos:pos + length]))
            pos += length
        else:
            raise ValueError(f"wire type {wire_type}")
    return out


def unknown_field(number: int, wire_type: int, rnd: random.Random) -> bytes:
    tag = varint(number << 3 | wire_type)
    if wire_type == 0:
        return tag + varint(rnd.getrandbits(rnd.choice([7, 35, 63])))
    if wire_type == 1:
        return tag + rnd.randbytes(8)
    if wire_type == 5:
        return tag + rnd.randbytes(4)
    if wire_type == 2:
        body = rnd.choice([b"", b"ghp_" + b"x" * 36, rnd.randbytes(rnd.randrange(0, 20))])
        return tag + varint(len(body)) + body
    inner = unknown_field(rnd.randrange(1, 30), rnd.choice([0, 2, 5]), rnd)  # a group with content
    return tag + inner + varint(number << 3 | 4)


def with_unknown_fields(data: bytes, descriptor, rnd: random.Random, wire_type: int, chance: float = 0.5) -> bytes:
    used = {fd.number for fd in descriptor.fields}
    out = []
    for number, wt, raw in fields(data):
        if rnd.random() < chance:
            out.append(unknown_field(_free_number(used, rnd), wire_type, rnd))
        fd = descriptor.fields_by_number.get(number)
        if fd is not None and fd.type == FieldDescriptor.TYPE_MESSAGE and wt == 2:
            raw = with_unknown_fields(raw, fd.message_type, rnd, wire_type, chance)
        out.append(varint(number << 3 | wt) + (varint(len(raw)) + raw if wt == 2 else raw))
    if rnd.random() < chance:
        out.append(unknown_field(_free_number(used, rnd), wire_type, rnd))
    return b"".join(out)


def _free_number(used: set[int], rnd: random.Random) -> int:
    while True:
        n = rnd.choice([rnd.randrange(1, 32), rnd.randrange(32, 5000)])
        if n not in used:
            return n
