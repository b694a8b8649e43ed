"""Who may send: bearer tokens (the Collector's bearertokenauth) and the TLS settings of listeners."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import ssl

from ...config import ServiceConfig
from ...errors import ConfigError

log = logging.getLogger(__name__)


class BearerTokens:
    """Accepted tokens from ``service.auth.bearer_tokens_file``: one per line; blank lines and
    lines starting with # are skipped. Compared in constant time; never logged."""

    def __init__(self, path: str | None):
        self.path = path
        self._tokens: tuple[bytes, ...] = ()
        if path:
            self.reload()

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def reload(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                tokens = tuple(line.strip().encode() for line in fh if line.strip() and not line.lstrip().startswith("#"))
        except OSError as exc:
            raise ConfigError(f"cannot read bearer tokens: {exc.strerror}", self.path) from None
        if not tokens:
            raise ConfigError("no token in the file: every request would be refused", self.path)
        self._tokens = tokens

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` value (``Bearer <token>``) carries an accepted token."""
        if not self.enabled:
            return True
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        given = token.strip().encode()
        found = False
        for accepted in self._tokens:  # no early exit: the time taken says nothing about the tokens
            found |= hmac.compare_digest(given, accepted)
        return found


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", path) from None


def grpc_server_credentials(config: ServiceConfig):
    """grpc.ServerCredentials for service.tls, or None for plaintext."""
    import grpc

    tls = config.tls
    if not tls.enabled:
        return None
    key, cert = _read(tls.key_file, "TLS key"), _read(tls.cert_file, "TLS certificate")
    ca = _read(tls.client_ca_file, "client CA") if tls.client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def http_ssl_context(config: ServiceConfig) -> ssl.SSLContext | None:
    tls = config.tls
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            context.load_verify_locations(tls.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS files cannot be used: {exc}", "service.tls") from None
    return context


def _loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(config: ServiceConfig, tokens: BearerTokens) -> None:
    """A listener beyond loopback with neither TLS nor authentication is anyone's to shape."""
    if config.listen_admin and not _loopback(config.listen_admin):
        log.warning("service.listen_admin %s is reachable beyond this machine without authentication: "
                    "/state tells anyone who can reach it what each identity usually does; keep it "
                    "pod-local (out of every Service and load balancer) or on loopback", config.listen_admin)
    for name, listen in (("listen_grpc", config.listen_grpc), ("listen_http", config.listen_http)):
        if not listen:
            continue
        loopback = _loopback(listen)
        if not loopback and not config.tls.enabled and not tokens.enabled:
            log.warning("service.%s %s is reachable beyond this machine with neither TLS (service.tls) nor "
                        "authentication (service.auth.bearer_tokens_file): anyone who can reach it can send "
                        "telemetry and shape the baselines", name, listen)
        elif not loopback and not config.tls.enabled:
            log.warning("service.%s %s takes bearer tokens over plaintext: set service.tls", name, listen)
