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

from ...config import ExportConfig, ProcessorConfig, as_export
from ...errors import ConfigError


def metric_exporter(target: ExportConfig):
    """The OpenTelemetry SDK's OTLP metric exporter for ``target`` (TLS, headers); a one-line
    ConfigError when the exporter package it needs is not installed."""
    headers = target.resolved_headers() or None
    t = target.tls
    if target.is_http:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        except ImportError:
            raise ConfigError("is an OTLP/HTTP endpoint, but opentelemetry-exporter-otlp-proto-http is not "
                              "installed (pip install opentelemetry-exporter-otlp-proto-http)",
                              "telemetry.metrics_endpoint") from None
        return OTLPMetricExporter(endpoint=target.endpoint.rstrip("/") + "/v1/metrics", headers=headers,
                                  certificate_file=t.ca_file, client_certificate_file=t.cert_file,
                                  client_key_file=t.key_file)
    try:
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    except ImportError:
        raise ConfigError("is an OTLP/gRPC endpoint, but opentelemetry-exporter-otlp-proto-grpc is not "
                          "installed (pip install opentelemetry-exporter-otlp-proto-grpc)",
                          "telemetry.metrics_endpoint") from None
    credentials = None
    if target.uses_tls:
        def read(path):
            return open(path, "rb").read() if path else None
        credentials = grpc.ssl_channel_credentials(read(t.ca_file), read(t.key_file), read(t.cert_file))
    return OTLPMetricExporter(endpoint=target.endpoint, insecure=not target.uses_tls, credentials=credentials,
                              headers=headers)


class ProcessorMetrics:
    def __init__(self, config: ProcessorConfig, identities: Callable[[], int],
                 evictions: Callable[[], dict[str, int]]):
        self.reader = InMemoryMetricReader()
        readers = [self.reader]
        self.prometheus_registry = None
        if config.telemetry.prometheus:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry

            # One registry per service (not the process-wide default): two services in one
            # process, as in the tests, each show their own.
            self.prometheus_registry = CollectorRegistry(auto_describe=True)
            readers.append(PrometheusMetricReader(registry=self.prometheus_registry))
        target = as_export(config.telemetry.metrics_endpoint)
        if target:
            readers.append(PeriodicExportingMetricReader(
                metric_exporter(target), export_interval_millis=config.telemetry.metrics_interval_s * 1000))
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
        self.vendor = meter.create_counter(
            "nhi.processor.vendor.records", unit="{record}",
            description="Log records whose body is a vendor audit record, per source and outcome (mapped, skipped)")
        self.batches = meter.create_counter("nhi.processor.batches.forwarded", unit="{batch}",
                                            description="Batches accepted downstream, per signal")
        self.downstream_failures = meter.create_counter("nhi.processor.downstream.failures", unit="{batch}",
                                                        description="Export attempts refused as retryable")
        self.downstream_rejected = meter.create_counter(
            "nhi.processor.downstream.rejected", unit="{record}",
            description="Records downstream refused permanently (the sender was told not to retry)")
        self.refused = meter.create_counter(
            "nhi.processor.requests.refused", unit="{request}",
            description="Requests refused before parsing (reason: records over the cap, memory budget full)")
        self.downstream_partial = meter.create_counter(
            "nhi.processor.downstream.partial", unit="{record}",
            description="Records downstream dropped from batches it accepted (partial_success, passed on to the sender)")
        self.splits = meter.create_counter("nhi.processor.downstream.splits", unit="{batch}",
                                           description="Batches split because they were over the downstream's limit")
        self.retries_recognised = meter.create_counter(
            "nhi.processor.retries.recognised", unit="{record}",
            description="Records of a sender's retry of a refused batch (outcome: not_learnt_twice, already_delivered)")
        self.late_answers = meter.create_counter(
            "nhi.processor.batches.after_deadline", unit="{batch}",
            description="Batches delivered after the sender's gRPC deadline had passed (its retry is recognised)")
        self.malformed = meter.create_counter("nhi.processor.requests.malformed", unit="{request}",
                                              description="Requests refused as not valid OTLP (or over a size "
                                                          "limit), per signal")
        self.unauthenticated = meter.create_counter("nhi.processor.requests.unauthenticated", unit="{request}",
                                                    description="Requests refused for want of a valid bearer token")
        self.http_refused = meter.create_counter(
            "nhi.processor.http.refused", unit="{connection}",
            description="OTLP/HTTP connections or requests refused (reason: connection_cap, slow_body, bad_http)")
        self.events = meter.create_counter("nhi.processor.events.emitted", unit="{event}",
                                           description="Convergence events exported (each version of an incident)")
        self.events_failed = meter.create_counter("nhi.processor.events.export_failures", unit="{event}",
                                                  description="Events in failed export attempts (retried)")
        self.events_suppressed = meter.create_counter(
            "nhi.processor.events.suppressed", unit="{event}",
            description="Events not sent because an exception matched them, per exception id")
        self.events_dropped = meter.create_counter("nhi.processor.events.dropped", unit="{event}",
                                                   description="Undelivered events dropped, oldest first, "
                                                               "when more than MAX_PENDING_EVENTS were held")
        self.latency = meter.create_histogram("nhi.processor.batch.duration", unit="s",
                                              description="Time to process and forward one batch")

        def _identities(_: CallbackOptions):
            yield Observation(identities())

        def _evictions(_: CallbackOptions):
            for tier, count in evictions().items():
                yield Observation(count, {"tier": tier})

        meter.create_observable_gauge("nhi.processor.identities.tracked", [_identities], unit="{identity}",
                                      description="Identities the engine holds a baseline for")
        meter.create_observable_counter("nhi.processor.identities.evicted", [_evictions], unit="{identity}",
                                        description="Identities evicted to stay within engine.max_identities, "
                                                    "per tier (probation, settled)")

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

    def prometheus_text(self) -> bytes | None:
        """The metrics in the Prometheus text format, None when telemetry.prometheus is off."""
        if self.prometheus_registry is None:
            return None
        from prometheus_client import generate_latest

        return generate_latest(self.prometheus_registry)

    def shutdown(self) -> None:
        self.provider.shutdown()
