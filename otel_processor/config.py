"""The processor's configuration: one YAML file, every setting optional, flags override it.

Like a Collector contrib processor's config: plain dataclasses with defaults that work with no
file at all, and ``validate()`` on each section so that a bad value stops start-up with
``file:line: problem`` instead of surfacing as a runtime surprise.

May import: errors, yamlbind, engine
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .engine.config import EngineConfig
from .yamlbind import load_file

DEFAULT_LISTEN_GRPC = "127.0.0.1:14317"
DEFAULT_LISTEN_HTTP = "127.0.0.1:14318"
DEFAULT_LISTEN_ADMIN = "127.0.0.1:14319"
DEFAULT_FORWARD = "127.0.0.1:24317"
_ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


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
class ServerTLSConfig:
    """TLS for both listeners (the Collector's configtls names). ``client_ca_file`` turns on mutual
    TLS: clients must present a certificate signed by it."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    def validate(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("service.tls needs both cert_file and key_file")
        if self.client_ca_file and not self.cert_file:
            raise ValueError("service.tls.client_ca_file (mutual TLS) needs cert_file and key_file too")


@dataclass
class AuthConfig:
    """Who may send. ``bearer_tokens_file``: one accepted token per line (blank lines and lines
    starting with # ignored); gRPC metadata ``authorization: Bearer <token>`` or the HTTP
    ``Authorization`` header must carry one of them."""

    bearer_tokens_file: str | None = None
    # Tokens for the admin listener's /state and /metrics (the same file format); /healthz,
    # /readyz and /version stay open for probes. None: the admin listener takes no token.
    admin_bearer_tokens_file: str | None = None


@dataclass
class ClientTLSConfig:
    """TLS towards an OTLP endpoint (forward, events, metrics). TLS is used for ``https://``
    endpoints, and for ``host:port`` ones when ``insecure`` is false or a file is given."""

    insecure: bool | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def validate(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("tls needs both cert_file and key_file for a client certificate")


@dataclass
class ExportConfig:
    """An OTLP endpoint to send to: ``host:port`` (gRPC) or ``http(s)://...`` (OTLP/HTTP), with TLS
    and headers sent with every export (an API key for a SaaS endpoint, say). ``${env:NAME}`` in a
    header value is read from the environment at start-up, so that secrets stay out of files."""

    endpoint: str
    tls: ClientTLSConfig = field(default_factory=ClientTLSConfig)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_http(self) -> bool:
        return self.endpoint.startswith(("http://", "https://"))

    @property
    def uses_tls(self) -> bool:
        if self.endpoint.startswith("https://"):
            return True
        if self.endpoint.startswith("http://"):
            return False
        t = self.tls
        return t.insecure is False or bool(t.ca_file or t.cert_file)

    def resolved_headers(self) -> dict[str, str]:
        out = {}
        for key, value in self.headers.items():
            def env(m: re.Match, key=key) -> str:
                if m.group(1) not in os.environ:
                    raise ValueError(f"header {key!r} names environment variable {m.group(1)}, which is not set")
                return os.environ[m.group(1)]
            out[key.lower()] = _ENV_REFERENCE.sub(env, str(value))
        return out

    def validate(self) -> None:
        check_endpoint(self.endpoint, "endpoint")
        self.tls.validate()

    def describe(self) -> str:
        """The endpoint for logs and start-up output (never the headers: they may be secrets)."""
        return self.endpoint + (" (TLS)" if self.uses_tls and not self.endpoint.startswith("https") else "")


def as_export(value: str | ExportConfig | None) -> ExportConfig | None:
    """A plain endpoint string is an ExportConfig with no TLS files and no headers."""
    if value is None or isinstance(value, ExportConfig):
        return value
    return ExportConfig(str(value))


@dataclass
class ServiceConfig:
    """How the OTLP service listens and forwards."""

    listen_grpc: str | None = DEFAULT_LISTEN_GRPC
    listen_http: str | None = DEFAULT_LISTEN_HTTP
    # Health (/healthz, /readyz), Prometheus /metrics and the state inspection endpoint
    # (/state/IDENTITY). Plain HTTP without auth: keep it on loopback or a pod-local address.
    listen_admin: str | None = DEFAULT_LISTEN_ADMIN
    tls: ServerTLSConfig = field(default_factory=ServerTLSConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    forward: str | ExportConfig = DEFAULT_FORWARD
    # Largest request accepted, bytes (gRPC message or HTTP body, after decompression).
    max_request_bytes: int = 16 * 1024 * 1024
    # How long one downstream export may take before the batch is refused as retryable. A slow
    # export is not abandoned: if it completes, the sender's retry is answered without sending twice.
    forward_timeout_s: float = 5.0
    # Retry delay advertised upstream (gRPC RetryInfo, HTTP Retry-After) when downstream fails.
    retry_after_s: float = 1.0
    # Batches processed at once; further requests wait (back-pressure, not loss).
    max_concurrent_batches: int = 8
    # SIGTERM: time allowed to finish in-flight batches and flush before exit.
    shutdown_grace_s: float = 8.0
    # OTLP/HTTP listener limits: connections at once (beyond: 503 and close), time to receive a
    # request's headers, time to receive its whole body, idle time between requests on one
    # connection, and the size of a request's headers.
    http_max_connections: int = 256
    http_read_header_timeout_s: float = 10.0
    http_read_timeout_s: float = 30.0
    http_idle_timeout_s: float = 60.0
    http_max_header_bytes: int = 16 * 1024
    # What requests may hold at once, MiB: wire bytes, decompressed bytes and parsed records
    # (admission.estimate); past it a request is refused with RESOURCE_EXHAUSTED + RetryInfo /
    # HTTP 429 + Retry-After and the sender retries. One request alone may always use all of it.
    memory_limit_mib: int = 512
    # Records (spans, log records, metrics) per request, counted off the wire before parsing;
    # more is refused as INVALID_ARGUMENT / 413 (lower the sender's send_batch_max_size).
    max_records_per_request: int = 100_000
    # An HTTP body may expand at most this many times when decompressed.
    max_decompression_ratio: int = 200
    # Concurrent gRPC streams on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    grpc_max_streams_per_connection: int = 16
    # A request with more records is processed in parts of this many, each queued first come
    # first served, so a large request holds another sender's export for one part at most.
    batch_part_records: int = 4096

    @property
    def forward_target(self) -> ExportConfig:
        return as_export(self.forward)

    def validate(self) -> None:
        if self.listen_grpc:
            _check_host_port(self.listen_grpc, "service.listen_grpc")
        if self.listen_http:
            _check_host_port(self.listen_http, "service.listen_http")
        if self.listen_admin:
            _check_host_port(self.listen_admin, "service.listen_admin")
        if not self.listen_grpc and not self.listen_http:
            raise ValueError("at least one of service.listen_grpc, service.listen_http is needed")
        self.tls.validate()
        try:
            self.forward_target.validate()
        except ValueError as exc:
            raise ValueError(f"service.forward: {exc}") from None
        if self.max_request_bytes < 1024:
            raise ValueError("service.max_request_bytes must be at least 1024")
        for name in ("forward_timeout_s", "retry_after_s", "shutdown_grace_s", "http_read_header_timeout_s",
                     "http_read_timeout_s", "http_idle_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"service.{name} must be positive")
        if self.max_concurrent_batches < 1:
            raise ValueError("service.max_concurrent_batches must be at least 1")
        for name in ("memory_limit_mib", "max_records_per_request", "max_decompression_ratio",
                     "grpc_max_streams_per_connection", "batch_part_records"):
            if getattr(self, name) < 1:
                raise ValueError(f"service.{name} must be at least 1")
        if self.http_max_connections < 1 or self.http_max_header_bytes < 1024:
            raise ValueError("service.http_max_connections must be at least 1 and http_max_header_bytes 1024")


@dataclass
class MaskingConfig:
    """Site-specific additions to what is masked (outputs/redact.py says what always is)."""

    # Attribute names that hold credentials here (glob patterns, any case), at any depth.
    extra_keys: list[str] = field(default_factory=list)
    # Secret formats of your own, as RE2 regular expressions; each match becomes [masked]. With
    # any set, every string of every record is checked: this costs throughput.
    extra_patterns: list[str] = field(default_factory=list)

    def validate(self) -> None:
        import re2

        for pattern in self.extra_patterns:
            try:
                re2.compile(pattern)
            except re2.error as exc:
                raise ValueError(f"masking.extra_patterns: {pattern!r} is not an RE2 expression: {exc}") from None


@dataclass
class EventsConfig:
    """Where convergence events go. Default: the forward endpoint's logs service."""

    endpoint: str | ExportConfig | None = None
    service_name: str = "nhi-convergence"
    # Body of each event: "text" (the sentence) or "ocsf" (an OCSF 1.5.0 Detection Finding as
    # JSON). The attributes are the same either way.
    format: str = "text"

    def validate(self) -> None:
        if self.format not in ("text", "ocsf"):
            raise ValueError(f"events.format must be text or ocsf, got {self.format!r}")
        if self.endpoint:
            try:
                as_export(self.endpoint).validate()
            except ValueError as exc:
                raise ValueError(f"events.endpoint: {exc}") from None


@dataclass
class TelemetryConfig:
    """The processor's own metrics (opentelemetry-sdk)."""

    # OTLP endpoint for the processor's own metrics; None keeps them in-process only.
    metrics_endpoint: str | ExportConfig | None = None
    metrics_interval_s: float = 30.0
    log_level: str = "INFO"
    # "text" or "json" (one JSON object per line: time, level, logger, message).
    log_format: str = "text"
    # Serve the processor's metrics in the Prometheus text format at /metrics on the admin
    # listener (service.listen_admin), beside (not instead of) the OTLP push above.
    prometheus: bool = False

    def validate(self) -> None:
        if self.metrics_endpoint:
            try:
                as_export(self.metrics_endpoint).validate()
            except ValueError as exc:
                raise ValueError(f"telemetry.metrics_endpoint: {exc}") from None
        if self.metrics_interval_s <= 0:
            raise ValueError("telemetry.metrics_interval_s must be positive")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("telemetry.log_level must be DEBUG, INFO, WARNING or ERROR")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"telemetry.log_format must be text or json, got {self.log_format!r}")


@dataclass
class ProcessorConfig:
    """Top-level configuration; ``nhi-processor serve --config FILE`` reads it."""

    service: ServiceConfig = field(default_factory=ServiceConfig)
    # Identity catalog (YAML). Relative paths are read relative to the config file.
    catalog: str | None = None
    # Exceptions (YAML, outputs/exceptions.py): expected events kept back, each with an owner, a
    # reason and an expiry. Relative to the config file too. Reloaded with the catalog on SIGHUP.
    exceptions: str | None = None
    # Snapshots of baselines; default $NHI_STATE_DIR; None keeps state in memory only.
    state_dir: str | None = field(default_factory=lambda: os.environ.get("NHI_STATE_DIR") or None)
    snapshot_interval_s: float = 60.0
    engine: EngineConfig = field(default_factory=EngineConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    def validate(self) -> None:
        if self.snapshot_interval_s <= 0:
            raise ValueError("snapshot_interval_s must be positive")

    @property
    def events_target(self) -> ExportConfig:
        return as_export(self.events.endpoint) or self.service.forward_target


def load_config(path: str | None) -> ProcessorConfig:
    """Read a config file (or the defaults when ``path`` is None). Relative file paths in it are
    read relative to the config file."""
    if path is None:
        return ProcessorConfig()
    config = load_file(path, ProcessorConfig)
    base = os.path.dirname(os.path.abspath(path))

    def here(name: str | None) -> str | None:
        return os.path.join(base, name) if name and not os.path.isabs(name) else name

    config.catalog = here(config.catalog)
    config.exceptions = here(config.exceptions)
    config.engine.rules_file = here(config.engine.rules_file)
    tls = config.service.tls
    tls.cert_file, tls.key_file, tls.client_ca_file = here(tls.cert_file), here(tls.key_file), here(tls.client_ca_file)
    config.service.auth.bearer_tokens_file = here(config.service.auth.bearer_tokens_file)
    for target in (config.service.forward, config.events.endpoint, config.telemetry.metrics_endpoint):
        if isinstance(target, ExportConfig):
            t = target.tls
            t.ca_file, t.cert_file, t.key_file = here(t.ca_file), here(t.cert_file), here(t.key_file)
    return config
