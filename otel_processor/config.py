"""The processor's configuration: one YAML file, every setting optional, flags override it.

Like a Collector contrib processor's config: plain dataclasses with defaults that work with no
file at all, and ``validate()`` on each section so that a bad value stops start-up with
``file:line: problem`` instead of surfacing as a runtime surprise.

May import: errors, yamlbind, engine
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .engine.config import EngineConfig
from .yamlbind import load_file

DEFAULT_LISTEN_GRPC = "127.0.0.1:14317"
DEFAULT_LISTEN_HTTP = "127.0.0.1:14318"
DEFAULT_FORWARD = "127.0.0.1:24317"


def _check_host_port(value: str, name: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{name} must be HOST:PORT, got {value!r}")


def check_endpoint(value: str, name: str) -> None:
    """``host:port`` means OTLP/gRPC; ``http://`` or ``https://`` means OTLP/HTTP."""
    if value.startswith(("http://", "https://")):
        return
    _check_host_port(value, name)


@dataclass
class ServiceConfig:
    """How the OTLP service listens and forwards."""

    listen_grpc: str | None = DEFAULT_LISTEN_GRPC
    listen_http: str | None = DEFAULT_LISTEN_HTTP
    forward: str = DEFAULT_FORWARD
    # Largest request accepted, bytes (gRPC message or HTTP body, after decompression).
    max_request_bytes: int = 16 * 1024 * 1024
    # How long one downstream export may take before the batch is refused as retryable.
    forward_timeout_s: float = 5.0
    # Retry delay advertised upstream (gRPC RetryInfo, HTTP Retry-After) when downstream fails.
    retry_after_s: float = 1.0
    # Batches processed at once; further requests wait (back-pressure, not loss).
    max_concurrent_batches: int = 8
    # SIGTERM: time allowed to finish in-flight batches and flush before exit.
    shutdown_grace_s: float = 8.0

    def validate(self) -> None:
        if self.listen_grpc:
            _check_host_port(self.listen_grpc, "service.listen_grpc")
        if self.listen_http:
            _check_host_port(self.listen_http, "service.listen_http")
        if not self.listen_grpc and not self.listen_http:
            raise ValueError("at least one of service.listen_grpc, service.listen_http is needed")
        check_endpoint(self.forward, "service.forward")
        if self.max_request_bytes < 1024:
            raise ValueError("service.max_request_bytes must be at least 1024")
        for name in ("forward_timeout_s", "retry_after_s", "shutdown_grace_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"service.{name} must be positive")
        if self.max_concurrent_batches < 1:
            raise ValueError("service.max_concurrent_batches must be at least 1")


@dataclass
class EventsConfig:
    """Where convergence events go. Default: the forward endpoint's logs service."""

    endpoint: str | None = None
    service_name: str = "nhi-convergence"

    def validate(self) -> None:
        if self.endpoint:
            check_endpoint(self.endpoint, "events.endpoint")


@dataclass
class TelemetryConfig:
    """The processor's own metrics (opentelemetry-sdk)."""

    # OTLP endpoint for the processor's own metrics; None keeps them in-process only.
    metrics_endpoint: str | None = None
    metrics_interval_s: float = 30.0
    log_level: str = "INFO"

    def validate(self) -> None:
        if self.metrics_endpoint:
            check_endpoint(self.metrics_endpoint, "telemetry.metrics_endpoint")
        if self.metrics_interval_s <= 0:
            raise ValueError("telemetry.metrics_interval_s must be positive")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("telemetry.log_level must be DEBUG, INFO, WARNING or ERROR")


@dataclass
class ProcessorConfig:
    """Top-level configuration; ``nhi-processor serve --config FILE`` reads it."""

    service: ServiceConfig = field(default_factory=ServiceConfig)
    # Identity catalog (YAML). Relative paths are read relative to the config file.
    catalog: str | None = None
    # Snapshots of baselines; default $NHI_STATE_DIR; None keeps state in memory only.
    state_dir: str | None = field(default_factory=lambda: os.environ.get("NHI_STATE_DIR") or None)
    snapshot_interval_s: float = 60.0
    engine: EngineConfig = field(default_factory=EngineConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    def validate(self) -> None:
        if self.snapshot_interval_s <= 0:
            raise ValueError("snapshot_interval_s must be positive")

    @property
    def events_endpoint(self) -> str:
        return self.events.endpoint or self.service.forward


def load_config(path: str | None) -> ProcessorConfig:
    """Read a config file (or the defaults when ``path`` is None)."""
    if path is None:
        return ProcessorConfig()
    config = load_file(path, ProcessorConfig)
    if config.catalog and not os.path.isabs(config.catalog):
        config.catalog = os.path.join(os.path.dirname(os.path.abspath(path)), config.catalog)
    return config
