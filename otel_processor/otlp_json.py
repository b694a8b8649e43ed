"""OTLP JSON encoding (OTLP specification): protobuf's JSON mapping, except that trace and span
ids are hex, not base64, and enums are integers.

One place for every reader and writer of OTLP JSON: the OTLP/HTTP receiver, the converter's and
the simulator's JSON lines files.

May import: (no other room)
"""

from __future__ import annotations

import base64
import json

from google.protobuf import json_format

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids_to_base64(node) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode() if value else ""
                except ValueError:
                    raise ValueError(f"{key} {value!r} is not hex") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def _base64_ids_to_hex(node) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _base64_ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _base64_ids_to_hex(item)


def parse_json(body: bytes | str, request_cls):
    """An OTLP JSON export request (hex ids) as a protobuf message."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    _hex_ids_to_base64(data)
    return json_format.ParseDict(data, request_cls(), ignore_unknown_fields=True)


def to_otlp_json(message) -> dict:
    """A message as OTLP JSON (hex ids, enums as integers), as the Collector's file exporter
    writes it and its OTLP JSON file receiver reads it."""
    data = json_format.MessageToDict(message, use_integers_for_enums=True)
    _base64_ids_to_hex(data)
    return data
