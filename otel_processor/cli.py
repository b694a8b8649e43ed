"""``nhi-processor``: serve (standalone OTLP service), rotel (inside the Rotel collector), check-config,
convert (vendor audit-log files to OTLP JSON lines).

Every problem a user can fix (a bad config, catalog, rules or token file, unreadable TLS files, a
busy port, a corrupt snapshot, a state directory that is a file) is one line naming the file and
the problem, and exit code 2; never a traceback and never a crash loop.

May import: model, errors, yamlbind, anyvalue, otlp_json, _compiled, version, config, identity, observe, engine, outputs, inputs, pipeline, hosts
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .version import __version__
from ._compiled import hot_path
from .config import ExportConfig, ProcessorConfig, load_config
from .errors import ConfigError


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (every setting optional)")
    p.add_argument("--listen-grpc", metavar="HOST:PORT", help="OTLP/gRPC listen address")
    p.add_argument("--listen-http", metavar="HOST:PORT", help="OTLP/HTTP listen address")
    p.add_argument("--forward", metavar="ENDPOINT",
                   help="downstream OTLP: host:port for gRPC, http(s)://... for OTLP/HTTP")
    p.add_argument("--state-dir", help="where baselines are snapshotted (default $NHI_STATE_DIR)")
    p.add_argument("--reset-state", action="store_true",
                   help="move an existing snapshot aside (kept as <file>.reset-<time>) and start with no baselines")
    p.add_argument("--catalog", help="identity catalog YAML")
    p.add_argument("--events-endpoint", help="where convergence events go (default: --forward)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def build_config(args: argparse.Namespace) -> ProcessorConfig:
    """The file's settings, then the flags over them, then validation of the result."""
    config = load_config(args.config)
    if args.listen_grpc is not None:
        config.service.listen_grpc = args.listen_grpc or None
    if args.listen_http is not None:
        config.service.listen_http = args.listen_http or None
    if args.forward:
        if isinstance(config.service.forward, ExportConfig):
            config.service.forward.endpoint = args.forward  # keeps the file's TLS and headers
        else:
            config.service.forward = args.forward
    if args.state_dir:
        config.state_dir = args.state_dir
    if args.catalog:
        config.catalog = args.catalog
    if getattr(args, "events_endpoint", None):
        config.events.endpoint = args.events_endpoint
    if args.log_level:
        config.telemetry.log_level = args.log_level
    try:
        config.service.validate()
        config.events.validate()
        config.telemetry.validate()
    except ValueError as exc:
        raise ConfigError(str(exc), "command line") from None
    return config


def preflight(config: ProcessorConfig) -> None:
    """Everything start-up would trip over, checked before anything listens: files named in the
    config exist and parse, the metrics exporter is installed, the state directory is usable."""
    from .engine.features import RuleBook
    from .hosts.serve.auth import BearerTokens, grpc_server_credentials, http_ssl_context
    from .hosts.serve.metrics import metric_exporter
    from .hosts.serve.service import check_state_dir
    from .identity.catalog import load_catalog
    from .config import as_export

    if config.catalog:
        load_catalog(config.catalog)
    RuleBook.load(config.engine.rules_file)
    BearerTokens(config.service.auth.bearer_tokens_file)
    if config.service.tls.enabled:
        grpc_server_credentials(config.service)
        http_ssl_context(config.service)
    for target in (config.service.forward_target, config.events_target):
        for path in (target.tls.ca_file, target.tls.cert_file, target.tls.key_file):
            if path:
                try:
                    open(path, "rb").close()
                except OSError as exc:
                    raise ConfigError(f"cannot read: {exc.strerror}", path) from None
        try:
            target.resolved_headers()
        except ValueError as exc:
            raise ConfigError(str(exc), target.endpoint) from None
    metrics = as_export(config.telemetry.metrics_endpoint)
    if metrics:
        metric_exporter(metrics).shutdown()
    check_state_dir(config)


def serve(config: ProcessorConfig) -> int:
    from .hosts.serve.service import Service

    service = Service(config).start()
    svc = config.service
    where = ", ".join(x for x in (
        f"OTLP/gRPC {svc.listen_grpc.rpartition(':')[0]}:{service.grpc_port}" if svc.listen_grpc else "",
        f"OTLP/HTTP {svc.listen_http.rpartition(':')[0]}:{service.http_port}" if svc.listen_http else "",
    ) if x)
    security = ("TLS" + (" with client certificates" if svc.tls.client_ca_file else "") if svc.tls.enabled
                else "plaintext") + (", bearer tokens" if svc.auth.bearer_tokens_file else "")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before "listening": a supervisor may act on that line
        signal.signal(sig, lambda *_: stop.set())
    print(f"nhi-processor {__version__}: listening on {where} ({security}); forwarding to "
          f"{svc.forward_target.describe()}; events to {config.events_target.describe()}; state "
          f"{config.state_dir or 'in memory only'}; {hot_path()}", flush=True)
    while not stop.wait(0.5):
        pass
    service.stop()
    print("nhi-processor: drained and stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nhi-processor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"nhi-processor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run as an OTLP service between two pipelines")
    _add_common(p_serve)
    p_rotel = sub.add_parser("rotel", help="run inside the Rotel collector (in-process)")
    _add_common(p_rotel)
    p_check = sub.add_parser("check-config", help="validate a config and every file it names, and exit")
    p_check.add_argument("file")
    p_convert = sub.add_parser(
        "convert", help="vendor audit-log files and folders (CloudTrail, Entra ID, Microsoft 365, GitHub, "
                        "Kubernetes, Google Cloud) -> OTLP JSON lines")
    p_convert.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (read recursively; .gz too)")
    p_convert.add_argument("--out", required=True, help="output file, or - for stdout")
    p_convert.add_argument("--profile", help="read every record with this profile instead of recognising it")
    args = parser.parse_args(argv)
    if args.command == "convert":
        from .inputs.convert import main as convert_main

        return convert_main(args.paths, args.out, args.profile)
    from .engine.state import StateError

    try:
        if args.command == "check-config":
            preflight(load_config(args.file))
            print(f"{args.file}: ok")
            return 0
        config = build_config(args)
        preflight(config)
        logging.basicConfig(level=config.telemetry.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.reset_state:
            from .hosts.serve.service import reset_state

            moved = reset_state(config)
            if moved:
                print(f"nhi-processor: previous state moved to {moved}; starting with no baselines", flush=True)
        if args.command == "rotel":
            from .hosts.rotel import host as rotel_host
            return rotel_host.run_cli(args, config)
        return serve(config)
    except (ConfigError, StateError) as exc:
        print(f"nhi-processor: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
