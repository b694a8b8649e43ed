"""The batch path: decode-free processing of one OTLP export request, in place.

For every record: resolve the identity (once per resource where possible), build the
observation, ask the engine, write ``nhi.*`` attributes, replace credential values by their
fingerprints. Returns what the host needs to forward and to count. Hosts (the OTLP service,
the Rotel processor) own I/O; this module owns none.

PLACEHOLDER: passes records through untouched until identity resolution lands (issue 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .config import ProcessorConfig
from .engine import Engine
from .model import ConvergenceEvent


@dataclass
class BatchResult:
    records: int = 0           # records in the request
    attributed: int = 0        # records an identity was resolved for
    unattributed: int = 0      # records forwarded unchanged
    events: list[ConvergenceEvent] = field(default_factory=list)


class BatchProcessor:
    """Thread-safe: hosts may call it from several threads at once."""

    def __init__(self, config: ProcessorConfig | None = None, engine: Engine | None = None, catalog=None):
        self.config = config or ProcessorConfig()
        self.engine = engine or Engine(self.config.engine, catalog=catalog)
        self.catalog = catalog

    def process_traces(self, request: ExportTraceServiceRequest) -> BatchResult:
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        return BatchResult(records=n, unattributed=n)

    def process_logs(self, request: ExportLogsServiceRequest) -> BatchResult:
        n = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        return BatchResult(records=n, unattributed=n)
