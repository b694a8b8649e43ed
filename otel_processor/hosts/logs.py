"""The processor's own log lines: plain text for a terminal, or one JSON object per line
(``telemetry.log_format: json``) for a log pipeline that should not have to parse prose.

A JSON line holds ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``, the fields a
line carries besides its sentence (an event's ``nhi.identity.id``, ``nhi.convergence.score``,
``security_rule.name``...: passed as ``extra={"fields": {...}}``) and, for an error with a
traceback, ``exception``. The start-up and shutdown lines (``announce``) follow the same format.
Messages are the same in both formats; nothing in them is a credential (records are masked
before anything about them is logged).
"""

from __future__ import annotations

import datetime as dt
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def announce(message: str, log_format: str = "text", **fields) -> None:
    """A line that always shows (start-up, shutdown), on standard output, in the log format."""
    if log_format == "json":
        message = json.dumps({"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
                             .replace("+00:00", "Z"), "level": "INFO", "logger": "otel_processor",
                              "message": message, **fields}, ensure_ascii=False)
    print(message, flush=True)


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger's one handler on stderr, in the format asked for."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
