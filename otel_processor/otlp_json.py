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


class TooManyRecords(ValueError):
    """A request holding more records than the caller allows."""


_ENTRY_KEYS = ("resourceSpans", "resource_spans", "resourceLogs", "resource_logs", "resourceMetrics",
               "resource_metrics")
_SCOPE_KEYS = ("scopeSpans", "scope_spans", "scopeLogs", "scope_logs", "scopeMetrics", "scope_metrics")
_RECORD_KEYS = ("spans", "logRecords", "log_records", "metrics")


def _records_in(data: dict) -> int:
    """Records in a decoded OTLP JSON request, counted before the (slow) conversion to protobuf."""
    total = 0
    for entries in (data.get(k) for k in _ENTRY_KEYS):
        for entry in entries if isinstance(entries, list) else ():
            scope_lists = (entry.get(k) for k in _SCOPE_KEYS) if isinstance(entry, dict) else ()
            for scopes in scope_lists:
                for scope in scopes if isinstance(scopes, list) else ():
                    if isinstance(scope, dict):
                        total += sum(len(v) for v in (scope.get(k) for k in _RECORD_KEYS) if isinstance(v, list))
    return total


def parse_json(body: bytes | str, request_cls, max_records: int | None = None):
    """An OTLP JSON export request (hex ids) as a protobuf message; with ``max_records``, a
    request holding more is ``TooManyRecords`` before it is converted."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    if max_records is not None and (found := _records_in(data)) > max_records:
        raise TooManyRecords(f"the request holds {found:,} records, more than {max_records:,} "
                             f"(service.max_records_per_request): send smaller batches")
    _hex_ids_to_base64(data)
    return json_format.ParseDict(data, request_cls(), ignore_unknown_fields=True)


def to_otlp_json(message) -> dict:
    """A message as OTLP JSON (hex ids, enums as integers), as the Collector's file exporter
    writes it and its OTLP JSON file receiver reads it."""
    data = json_format.MessageToDict(message, use_integers_for_enums=True)
    _base64_ids_to_hex(data)
    return data
