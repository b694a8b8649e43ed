"""The processor's own metrics, through opentelemetry-sdk.

An in-memory reader is always attached so that tests (and ``snapshot()``) can read the values; a
periodic OTLP exporter is added when ``telemetry.metrics_endpoint`` is set.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from ...config import ProcessorConfig


class ProcessorMetrics:
    def __init__(self, config: ProcessorConfig, identities: Callable[[], int],
                 evictions: Callable[[], int]):
        self.reader = InMemoryMetricReader()
        readers = [self.reader]
        endpoint = config.telemetry.metrics_endpoint
        if endpoint:
            if endpoint.startswith(("http://", "https://")):
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
                exporter = OTLPMetricExporter(endpoint=endpoint.rstrip("/") + "/v1/metrics")
            else:
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
                exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
            readers.append(PeriodicExportingMetricReader(
                exporter, export_interval_millis=config.telemetry.metrics_interval_s * 1000))
        self.provider = MeterProvider(
            metric_readers=readers,
            resource=Resource.create({"service.name": config.events.service_name}),
        )
        meter = self.provider.get_meter("nhi-convergence")
        self.records_in = meter.create_counter("nhi.processor.records.received", unit="{record}",
                                               description="Records received, per signal")
        self.records_out = meter.create_counter("nhi.processor.records.forwarded", unit="{record}",
                                                description="Records accepted downstream, per signal")
        self.unattributed = meter.create_counter("nhi.processor.records.unattributed", unit="{record}",
                                                 description="Records no identity could be resolved for")
        self.record_errors = meter.create_counter("nhi.processor.records.failed", unit="{record}",
                                                  description="Records whose processing raised; forwarded unchanged")
        self.batches = meter.create_counter("nhi.processor.batches.forwarded", unit="{batch}")
        self.downstream_failures = meter.create_counter("nhi.processor.downstream.failures", unit="{batch}")
        self.malformed = meter.create_counter("nhi.processor.requests.malformed", unit="{request}")
        self.events = meter.create_counter("nhi.processor.events.emitted", unit="{event}")
        self.events_failed = meter.create_counter("nhi.processor.events.export_failures", unit="{event}",
                                                  description="Events in failed export attempts (retried)")
        self.events_dropped = meter.create_counter("nhi.processor.events.dropped", unit="{event}",
                                                   description="Undelivered events dropped, oldest first, "
                                                               "when more than MAX_PENDING_EVENTS were held")
        self.latency = meter.create_histogram("nhi.processor.batch.duration", unit="s",
                                              description="Time to process and forward one batch")

        def _identities(_: CallbackOptions):
            yield Observation(identities())

        def _evictions(_: CallbackOptions):
            yield Observation(evictions())

        meter.create_observable_gauge("nhi.processor.identities.tracked", [_identities], unit="{identity}")
        meter.create_observable_counter("nhi.processor.identities.evicted", [_evictions], unit="{identity}")

    def snapshot(self) -> dict[str, float]:
        """Current values summed over attributes: name -> value (histograms: count)."""
        out: dict[str, float] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    total = 0.0
                    for point in metric.data.data_points:
                        total += getattr(point, "value", None) if hasattr(point, "value") else point.count
                    out[metric.name] = total
        return out

    def shutdown(self) -> None:
        self.provider.shutdown()
