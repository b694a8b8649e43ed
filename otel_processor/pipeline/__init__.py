"""The batch path: one OTLP export request processed in place, record by record.

- ``attributes.py``: decode only the attributes that matter (the native core, ``native/``, reads
  them off the request's wire bytes; this is its reference).
- ``batch.py``: ``BatchProcessor``: resolve, observe, ask the engine, enrich, mask.
- ``core.py``: the batch contract hosts call, ``process(signal, request_bytes)`` -> the bytes to
  forward and the events; ``ReferenceCore`` is today's Python (and Cython) path behind it, the
  reference a native core will be tested against (issue 27).

Hosts own all I/O; nothing here opens a socket or a file.

May import: model, anyvalue, _compiled, config, identity, observe, engine, outputs, inputs
"""

from .batch import BatchProcessor, BatchResult

__all__ = ["BatchProcessor", "BatchResult"]
