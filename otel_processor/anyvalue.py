"""OTLP ``AnyValue`` to and from plain Python values: one place for every encoder and decoder.

May import: (no other room)
"""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def to_python(value: AnyValue):
    """str, int, float, bool, bytes, list or dict; None for an unset value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return [to_python(x) for x in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: to_python(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def set_value(target: AnyValue, data) -> None:
    """Write a plain Python value into ``target`` (lists and dicts recursively; None leaves it unset)."""
    if data is None:
        return
    if isinstance(data, bool):
        target.bool_value = data
    elif isinstance(data, int):
        if -(1 << 63) <= data < (1 << 63):
            target.int_value = data
        else:  # JSON numbers have no bound; OTLP's int_value is 64-bit
            target.string_value = str(data)
    elif isinstance(data, float):
        target.double_value = data
    elif isinstance(data, str):
        target.string_value = data
    elif isinstance(data, (bytes, bytearray)):
        target.bytes_value = bytes(data)
    elif isinstance(data, dict):
        target.kvlist_value.SetInParent()
        for key, item in data.items():
            kv = target.kvlist_value.values.add()
            kv.key = str(key)
            set_value(kv.value, item)
    elif isinstance(data, (list, tuple)):
        target.array_value.SetInParent()
        for item in data:
            set_value(target.array_value.values.add(), item)
    else:
        target.string_value = str(data)
