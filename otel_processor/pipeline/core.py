"""The batch contract every host calls: an OTLP export request's wire bytes in, the bytes to
forward and what was decided out.

Why bytes: the per-record path is moving into a native core (issue 27), which reads the wire
and writes its enrichment into the request's own bytes. Hosts that speak only this contract do
not change when it does; today's ``BatchProcessor`` is the reference core behind it (and stays
so: ``NHI_PURE_PYTHON=1`` and installs without a compiler run it).

``ReferenceCore.process(signal, data, learn)``:

- parses ``data`` (``MalformedRequest`` when it is not the signal's OTLP request);
- masks, resolves, asks the engine and enriches, in place;
- when that raises, falls back to masking only (``Processed.fell_back``: the records leave
  masked and otherwise unchanged, counted as failed); when even masking raises, ``UnsafeBatch``:
  what cannot be masked is never forwarded;
- returns the request as it leaves, serialized. Requests concatenate: the bytes of two parts are
  one request holding both (protobuf merges repeated fields), which is how a request processed
  in parts is forwarded whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .batch import BatchProcessor, BatchResult

log = logging.getLogger(__name__)

REQUESTS = {"traces": ExportTraceServiceRequest, "logs": ExportLogsServiceRequest,
            "metrics": ExportMetricsServiceRequest}


class MalformedRequest(ValueError):
    """The bytes are not the signal's OTLP export request."""


class UnsafeBatch(RuntimeError):
    """Processing failed and so did masking: the batch must not be forwarded."""


@dataclass
class Processed:
    data: bytes                                       # the request as it leaves: masked, enriched
    result: BatchResult = field(default_factory=BatchResult)
    fell_back: bool = False                           # processing raised: masked only


def count_records(signal: str, request) -> int:
    if signal == "traces":
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if signal == "logs":
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                total += len(getattr(metric, kind).data_points) if kind else 0
    return total


class ReferenceCore:
    """The Python core behind the batch contract (thread-safe, as ``BatchProcessor`` is)."""

    def __init__(self, processor: BatchProcessor):
        self.processor = processor

    def parse(self, signal: str, data: bytes):
        try:
            return REQUESTS[signal].FromString(data)
        except (DecodeError, RecursionError) as exc:
            raise MalformedRequest(f"not a valid OTLP {REQUESTS[signal].__name__}: {exc}") from None

    def process(self, signal: str, data: bytes, learn: bool = True) -> Processed:
        processor = self.processor
        if signal != "metrics" and processor.splices:
            try:
                spliced = processor.process_views(signal, data, learn)
            except Exception:  # noqa: BLE001 - the batch still leaves, but only masked
                log.exception("%s batch could not be processed; it leaves masked and otherwise unchanged", signal)
                return self._masked_only(signal, self.parse(signal, data), True)
            if isinstance(spliced, tuple):
                return Processed(spliced[0], spliced[1])
            scan = spliced  # what the reader found, or None
        else:
            scan = None
        request = self.parse(signal, data)
        return self.process_request(signal, request, data, learn, scan=scan)

    def process_request(self, signal: str, request, data: bytes | None = None, learn: bool = True,
                        serialize: bool = True, scan=None) -> Processed:
        """The same, for a host that already holds the parsed request (Rotel hands objects and
        writes the request back into them: ``serialize`` False leaves ``Processed.data`` empty).
        ``scan``: what the native reader already found in ``data``."""
        processor = self.processor
        try:
            if signal == "traces":
                result = processor.process_traces(request, data, learn, scan)
            elif signal == "logs":
                result = processor.process_logs(request, data, learn, scan)
            else:
                processor.process_metrics(request, data)
                result = BatchResult(records=count_records(signal, request))
        except Exception:  # noqa: BLE001 - the batch still leaves, but only masked
            log.exception("%s batch could not be processed; it leaves masked and otherwise unchanged", signal)
            return self._masked_only(signal, request, serialize)
        return Processed(request.SerializeToString() if serialize else b"", result)

    def _masked_only(self, signal: str, request, serialize: bool) -> Processed:
        """The request masked and otherwise unchanged, every record counted failed; UnsafeBatch
        when even masking fails (what cannot be masked is not forwarded)."""
        try:
            self.processor.scrub(request)
        except Exception:  # noqa: BLE001
            log.exception("%s batch could not even be masked", signal)
            raise UnsafeBatch(f"the {signal} batch could not be processed safely") from None
        n = count_records(signal, request)
        return Processed(request.SerializeToString() if serialize else b"", BatchResult(records=n, failed=n),
                         fell_back=True)
