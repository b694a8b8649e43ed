"""The admin listener (``service.listen_admin``): what an orchestrator and an operator ask of a
running service, on a port apart from the OTLP ones.

- ``GET /healthz``: 200 while the process serves (liveness);
- ``GET /readyz``: 200 when the listeners are up and the service is not shutting down, and
  downstream is not refusing; else 503 with the reason (readiness: take no new traffic);
- ``GET /metrics``: the processor's metrics in the Prometheus text format, when
  ``telemetry.prometheus`` is on (404 otherwise);
- ``GET /state/IDENTITY``: the identity's baseline as the engine holds it (JSON,
  engine/inspect.py), 404 when it is not tracked; what ``nhi-processor state show`` reads;
- ``GET /version``.

Plain HTTP, like the Collector's health_check and pprof extensions. ``/state`` tells what an
identity usually does and whether it has an open incident, and ``/metrics`` names identities'
counts: with ``service.auth.admin_bearer_tokens_file`` both take a bearer token, while the probes
and ``/version`` stay open (a kubelet probe carries none). Keep the listener on loopback or a
pod-local address behind a NetworkPolicy (deploy/kubernetes). ``/state`` looks an identity up in
the engine's index, never scanning under the engine's lock. Requests are small and few; the
stdlib's threading server is enough, with a read timeout so that an idle client holds nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ...errors import ConfigError
from ...version import __version__

log = logging.getLogger(__name__)
MAX_IDENTITY = 2048


class _Handler(BaseHTTPRequestHandler):
    server_version = f"nhi-convergence/{__version__}"
    timeout = 10

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        log.debug("admin %s", format % args)

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        service = self.server.service  # type: ignore[attr-defined]
        path = urllib.parse.urlsplit(self.path).path
        if path == "/healthz":
            self._send(200, b"ok\n")
        elif path == "/readyz":
            ready, why = service.readiness()
            self._send(200 if ready else 503, (why + "\n").encode())
        elif path == "/metrics" or path.startswith("/state/"):
            if not service.admin_tokens.allows(self.headers.get("Authorization")):
                self._send(401, b"a valid bearer token is required (service.auth.admin_bearer_tokens_file)\n")
            else:
                self._private(service, path)
        elif path == "/version":
            self._send(200, f"{__version__}\n".encode())
        else:
            self._send(404, b"not found: /healthz /readyz /metrics /state/IDENTITY /version\n")

    def _private(self, service, path: str) -> None:
        if path == "/metrics":
            text = service.metrics.prometheus_text()
            if text is None:
                self._send(404, b"telemetry.prometheus is off\n")
            else:
                self._send(200, text, "text/plain; version=0.0.4; charset=utf-8")
        else:
            identity = urllib.parse.unquote(path[len("/state/"):])
            if not identity or len(identity) > MAX_IDENTITY:
                self._send(400, b"name an identity: /state/KIND:PRINCIPAL\n")
                return
            found = service.engine.describe(identity)
            if found is None:
                self._send(404, b"identity not tracked\n")
            else:
                self._send(200, json.dumps(found, indent=1).encode(), "application/json")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def start_admin_server(service, listen: str) -> tuple[_Server, int]:
    host, _, port = listen.rpartition(":")
    try:
        server = _Server((host.strip("[]"), int(port)), _Handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror}", "service.listen_admin") from None
    server.service = service  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="nhi-admin", daemon=True).start()
    return server, server.server_address[1]
