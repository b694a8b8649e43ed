"""What was done: a span or log record read as an ``Observation`` (TELEMETRY.md section 2).

``record.py`` turns the decoded attributes of one record into time, signal, action, target,
source, outcome, volume and evidence ids; it also names the attributes worth decoding at all
(``WANTED``), so that the hot path never decodes the rest.

May import: model
"""
