"""One simulated telemetry record, before OTLP encoding.

Plain data so that generation, ordering, labelling and encoding stay separate. ``resource`` is a
tuple of pairs so records can be grouped by resource when batched, as an SDK would send them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SERVER, CLIENT, INTERNAL = 2, 3, 1


@dataclass(slots=True)
class SimRecord:
    time_ns: int
    signal: str                        # "traces" or "logs"
    resource: tuple[tuple[str, object], ...]
    attributes: dict[str, object]
    name: str = ""                     # span name / log event name
    span_kind: int = CLIENT
    error: bool = False                # span status ERROR
    body: str = ""
    body_object: dict | None = None    # a vendor record as the body (a map), in place of ``body``
    trace_id: bytes = b""
    span_id: bytes = b""
    duration_ns: int = 5_000_000
    extra: dict = field(default_factory=dict)  # never encoded: generator bookkeeping only
