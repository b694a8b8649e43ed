"""``nhi-processor``: serve (standalone OTLP service), rotel (inside the Rotel collector), check-config.

May import: model, errors, yamlbind, anyvalue, otlp_json, _compiled, config, identity, observe, engine, outputs, inputs, pipeline, hosts
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from ._compiled import hot_path
from .config import ProcessorConfig, load_config
from .errors import ConfigError


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (every setting optional)")
    p.add_argument("--listen-grpc", metavar="HOST:PORT", help="OTLP/gRPC listen address")
    p.add_argument("--listen-http", metavar="HOST:PORT", help="OTLP/HTTP listen address")
    p.add_argument("--forward", metavar="ENDPOINT",
                   help="downstream OTLP: host:port for gRPC, http(s)://... for OTLP/HTTP")
    p.add_argument("--state-dir", help="where baselines are snapshotted (default $NHI_STATE_DIR)")
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


def serve(config: ProcessorConfig) -> int:
    from .hosts.serve.service import Service

    service = Service(config).start()
    svc = config.service
    where = ", ".join(x for x in (
        f"OTLP/gRPC {svc.listen_grpc.rpartition(':')[0]}:{service.grpc_port}" if svc.listen_grpc else "",
        f"OTLP/HTTP {svc.listen_http.rpartition(':')[0]}:{service.http_port}" if svc.listen_http else "",
    ) if x)
    print(f"nhi-processor: listening on {where}; forwarding to {svc.forward}; events to "
          f"{config.events_endpoint}; state {config.state_dir or 'in memory only'}; {hot_path()}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    service.stop()
    print("nhi-processor: drained and stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nhi-processor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run as an OTLP service between two pipelines")
    _add_common(p_serve)
    p_rotel = sub.add_parser("rotel", help="run inside the Rotel collector (in-process)")
    _add_common(p_rotel)
    p_check = sub.add_parser("check-config", help="validate a config (and its catalog) and exit")
    p_check.add_argument("file")
    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            config = load_config(args.file)
            if config.catalog:
                from .identity.catalog import load_catalog
                load_catalog(config.catalog)
            print(f"{args.file}: ok")
            return 0
        config = build_config(args)
        if config.catalog:
            from .identity.catalog import load_catalog
            load_catalog(config.catalog)  # fail at start-up, not at the first record
    except ConfigError as exc:
        print(f"nhi-processor: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.telemetry.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "rotel":
        from .hosts.rotel import host as rotel_host
        return rotel_host.run_cli(args, config)
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
