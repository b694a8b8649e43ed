"""Vendor audit logs mapped onto the telemetry contract (TELEMETRY.md section 5): one profile per
source, the dispatch that picks it by content, the file reader and the ``convert`` command.

``record.py``: the case-insensitive, envelope-tolerant view of one vendor record and what a
profile returns (Mapped, Skipped); ``cloudtrail.py``, ``entra.py``, ``m365.py``, ``github.py``,
``kubernetes.py``, ``gcp.py``: one profile each; ``dispatch.py``: which profile reads a record;
``files.py``: records out of files in every layout; ``convert.py``: files -> OTLP JSON lines.
``testdata/``: a fixture per source and envelope, with ``expected.yaml``.

May import: model, errors, anyvalue, otlp_json
"""
