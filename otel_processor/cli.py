"""``nhi-processor``: serve (standalone OTLP service), rotel (inside the Rotel collector), check-config,
convert (vendor audit-log files to OTLP JSON lines), state show (an identity's baseline), exceptions
draft (a narrow exception for one event).

Every problem a user can fix (a bad config, catalog, rules or token file, unreadable TLS files, a
busy port, a corrupt snapshot, a state directory that is a file) is one line naming the file and
the problem, and exit code 2; never a traceback and never a crash loop.

May import: model, errors, yamlbind, anyvalue, otlp_json, _compiled, version, config, identity, observe, engine, outputs, inputs, pipeline, hosts
"""

from __future__ import annotations

import argparse
import logging
import os
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
    p.add_argument("--listen-admin", metavar="HOST:PORT",
                   help="health, readiness, Prometheus metrics and state inspection (empty: off)")
    p.add_argument("--forward", metavar="ENDPOINT",
                   help="downstream OTLP: host:port for gRPC, http(s)://... for OTLP/HTTP")
    p.add_argument("--state-dir", help="where baselines are snapshotted (default $NHI_STATE_DIR)")
    p.add_argument("--reset-state", action="store_true",
                   help="move an existing snapshot aside (kept as <file>.reset-<time>) and start with no baselines")
    p.add_argument("--catalog", help="identity catalog YAML")
    p.add_argument("--events-endpoint", help="where convergence events go (default: --forward)")
    p.add_argument("--exceptions", help="exceptions YAML (expected events kept back; owner, reason, expiry)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", choices=["text", "json"])


def build_config(args: argparse.Namespace) -> ProcessorConfig:
    """The file's settings, then the flags over them, then validation of the result."""
    config = load_config(args.config)
    if args.listen_grpc is not None:
        config.service.listen_grpc = args.listen_grpc or None
    if args.listen_http is not None:
        config.service.listen_http = args.listen_http or None
    if args.listen_admin is not None:
        config.service.listen_admin = args.listen_admin or None
    if args.exceptions:
        config.exceptions = args.exceptions
    if args.log_format:
        config.telemetry.log_format = args.log_format
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


def healthcheck(args) -> int:
    """GET /healthz on the admin listener the config names (0.0.0.0 and :: asked on loopback)."""
    import urllib.request

    from .config import DEFAULT_LISTEN_ADMIN

    try:
        listen = args.endpoint or load_config(args.config).service.listen_admin or DEFAULT_LISTEN_ADMIN
    except ConfigError as exc:
        print(f"nhi-processor healthcheck: {exc}", file=sys.stderr)
        return 2
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own admin listener
            return 0 if answer.status == 200 else 1
    except OSError as exc:
        print(f"nhi-processor healthcheck: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1


def check_config(path: str) -> int:
    """``check-config FILE``: a processor config (and every file it names, and that its
    listeners can bind), or an exceptions file on its own. 0 ok; 1 ok but something to act on
    (an exception that has expired); 2 wrong."""
    import yaml

    from .outputs.exceptions import load_exceptions

    try:
        with open(path, encoding="utf-8") as fh:
            head = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        head = None  # load_config says what is wrong, with the line
    if isinstance(head, dict) and set(head) == {"exceptions"} and isinstance(head["exceptions"], list):
        exceptions, config = load_exceptions(path), None
    else:
        config = load_config(path)
        preflight(config)
        check_listeners(config)
        exceptions = load_exceptions(config.exceptions) if config.exceptions else None
    expired = exceptions.expired() if exceptions is not None else []
    for entry in expired:
        print(f"{path}: exception {entry.id!r} expired on {entry.expires_at.date()}: it no longer applies; "
              f"remove it or renew it with a reason", file=sys.stderr)
    print(f"{path}: ok" + (f", but {len(expired)} expired exception{'s' if len(expired) > 1 else ''}"
                           if expired else ""))
    return 1 if expired else 0


def check_listeners(config: ProcessorConfig) -> None:
    """Each listener's address can be bound now (a busy port is start-up's commonest failure)."""
    import socket

    svc = config.service
    for setting, listen in (("service.listen_grpc", svc.listen_grpc), ("service.listen_http", svc.listen_http),
                            ("service.listen_admin", svc.listen_admin)):
        if not listen:
            continue
        host, _, port = listen.rpartition(":")
        if not port.isdigit() or int(port) == 0:
            continue
        try:
            infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
            with socket.socket(infos[0][0], infos[0][1], infos[0][2]) as probe:
                probe.bind(infos[0][4])
        except OSError as exc:
            raise ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}", setting) from None


def preflight(config: ProcessorConfig) -> None:
    """Everything start-up would trip over, checked before anything listens: files named in the
    config exist and parse, the metrics exporter is installed, the state directory is usable."""
    from .engine.features import RuleBook
    from .hosts.serve.auth import BearerTokens, grpc_server_credentials, http_ssl_context
    from .hosts.serve.metrics import metric_exporter
    from .hosts.serve.service import check_state_dir
    from .identity.catalog import load_catalog
    from .config import as_export

    from .outputs.exceptions import load_exceptions

    if config.catalog:
        load_catalog(config.catalog)
    if config.exceptions:
        load_exceptions(config.exceptions)
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
        f"admin {svc.listen_admin.rpartition(':')[0]}:{service.admin_port}" if svc.listen_admin else "",
    ) if x)
    security = ("TLS" + (" with client certificates" if svc.tls.client_ca_file else "") if svc.tls.enabled
                else "plaintext") + (", bearer tokens" if svc.auth.bearer_tokens_file else "")
    stop = threading.Event()
    reload = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before "listening": a supervisor may act on that line
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    from .hosts.logs import announce

    log_format = config.telemetry.log_format
    announce(f"nhi-processor {__version__}: listening on {where} ({security}); forwarding to "
             f"{svc.forward_target.describe()}; events to {config.events_target.describe()}; state "
             f"{config.state_dir or 'in memory only'}; {hot_path()}", log_format, version=__version__,
             listening=where, forward=svc.forward_target.describe(), state_dir=config.state_dir)
    while not stop.wait(0.5):
        if reload.is_set():
            reload.clear()
            service.reload()
        service.gate.log_expired()  # at most daily
    service.stop()
    announce("nhi-processor: drained and stopped", log_format)
    return 0


def state_show(args) -> int:
    import json

    from .config import DEFAULT_LISTEN_ADMIN
    from .hosts.state_show import first_token, from_service, from_state_dir, render

    if args.state_dir:
        found = from_state_dir(args.state_dir, args.identity, load_config(args.config))
    else:
        service = load_config(args.config).service
        endpoint = args.endpoint or service.listen_admin or DEFAULT_LISTEN_ADMIN
        token = first_token(args.token_file or service.auth.admin_bearer_tokens_file)
        found = from_service(endpoint, args.identity, token=token)
    if found is None:
        print(f"nhi-processor: {args.identity}: not tracked (no record of it yet, or evicted)", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=1) if args.json else render(found))
    return 0


def read_event(path: str, convergence_id: str | None = None) -> dict:
    """One convergence event's attributes from an OTLP JSON export, a flat attribute object or
    an OCSF finding: the first convergence event in the file, or with ``convergence_id`` the
    latest version of that incident."""
    import json

    from .anyvalue import to_python
    from .otlp_json import parse_json
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    try:
        text = open(path, encoding="utf-8").read(16 * 1024 * 1024)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path) from None
    found: list[dict] = []
    for line in ([text] + text.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "resourceLogs" in data:
            request = parse_json(line, ExportLogsServiceRequest)
            for rl in request.resource_logs:
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        attrs = {kv.key: to_python(kv.value) for kv in record.attributes}
                        if attrs.get("event.name") == "nhi.convergence":
                            found.append(attrs)
        elif isinstance(data, dict) and "nhi.identity.id" in data:
            found.append(data)
        elif isinstance(data, dict) and data.get("class_uid") == 2004:
            found.append(_from_ocsf(data))
        if found and convergence_id is None:
            return found[0]
    if convergence_id is not None:
        mine = [e for e in found if e.get("nhi.convergence.id") == convergence_id]
        if mine:
            return max(mine, key=lambda e: e.get("nhi.convergence.version") or 0)
        raise ConfigError(f"no convergence event {convergence_id} in it", path)
    raise ConfigError("no convergence event in it (OTLP JSON, flat attributes or an OCSF finding)", path)


def _from_ocsf(finding: dict) -> dict:
    info = finding.get("finding_info") or {}
    user = (finding.get("actor") or {}).get("user") or {}
    evidences = [e for e in finding.get("evidences") or [] if isinstance(e, dict)]
    anomalies = [a for x in finding.get("anomaly_analyses") or [] for a in x.get("anomalies") or []]
    return {
        "nhi.identity.id": user.get("uid"),
        "nhi.convergence.id": info.get("uid"),
        "security_rule.name": info.get("title"),
        "nhi.convergence.findings": [a.get("observation_parameter", "") for a in anomalies],
        # every evidence's: the first carries the latest action and the targets, the others the rest
        "nhi.convergence.actions": [e["api"].get("operation") for e in evidences if isinstance(e.get("api"), dict)],
        "nhi.convergence.targets": [r.get("name") for e in evidences for r in e.get("resources") or []
                                    if isinstance(r, dict)],
        # addresses, not networks: an exact address is the narrower match
        "nhi.convergence.networks": [e["src_endpoint"].get("ip") for e in finding.get("evidences") or []
                                     if isinstance(e.get("src_endpoint"), dict)],
        "nhi.convergence.overflow": (finding.get("unmapped") or {}).get("nhi.convergence.overflow") or [],
    }


def ranges_refresh(files: list[str], out: str) -> int:
    """Reads the providers' files and writes the compact one; says what it holds and how old."""
    from .engine.provider_ranges import MAX_AGE_DAYS, ProviderRanges

    try:
        ranges = ProviderRanges.from_vendor_files(files)
        ranges.dump(out)
    except (OSError, ValueError) as exc:
        print(f"nhi-processor ranges refresh: {exc}", file=sys.stderr)
        return 2
    for name in sorted(ranges.published):
        print(f"{name}: {len(ranges.prefixes[name])} prefixes published {ranges.published[name]}")
    if ranges.age_days() > MAX_AGE_DAYS:
        print(f"warning: the oldest is {ranges.age_days()} days old (over {MAX_AGE_DAYS}): download them again",
              file=sys.stderr)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 1 the command ran but found something wrong (an identity not tracked,
    records convert could not read, nothing to write); 2 the input or configuration is wrong (one
    line on stderr says what). Output cut short by its reader (``| head``) is no error."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away: say nothing more, and let the interpreter not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
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
    p_state = sub.add_parser("state", help="inspect what the engine holds")
    state_sub = p_state.add_subparsers(dest="state_command", required=True)
    p_show = state_sub.add_parser("show", help="an identity's baseline, trust and open incident")
    p_show.add_argument("identity", help="identity id (kind:principal), or a principal when unambiguous")
    p_show.add_argument("--endpoint", help="a running service's admin listener (default 127.0.0.1:14319)")
    p_show.add_argument("--state-dir", help="read the snapshot in this directory instead of a running service")
    p_show.add_argument("--config", help="the service's config (for --state-dir: its engine settings)")
    p_show.add_argument("--json", action="store_true", help="print JSON")
    p_show.add_argument("--token-file", help="a bearer tokens file whose first token the admin listener accepts "
                                             "(default: the config's service.auth.admin_bearer_tokens_file)")
    p_exc = sub.add_parser("exceptions", help="work with exceptions files")
    exc_sub = p_exc.add_subparsers(dest="exceptions_command", required=True)
    p_draft = exc_sub.add_parser("draft", help="a narrow exception for one event (YAML on stdout)")
    p_draft.add_argument("event", help="the event as JSON: OTLP JSON (a Collector file export), a flat "
                                       "attribute object, or an OCSF finding from events.format: ocsf")
    p_draft.add_argument("--days", type=int, default=30, help="days until it expires (default 30)")
    p_draft.add_argument("--id", help="the nhi.convergence.id of the incident, in a file of several events "
                                      "(`nhi-sim sink --json FILE`); its latest version is drafted from")
    p_health = sub.add_parser("healthcheck", help="ask a running service's admin listener /healthz (a "
                                                  "container's health check): exit 0 when it answers 200")
    p_health.add_argument("--config", help="the service's config: its service.listen_admin is asked")
    p_health.add_argument("--endpoint", help="the admin listener, HOST:PORT (overrides the config)")
    p_ranges = sub.add_parser("ranges", help="cloud providers' published address ranges")
    ranges_sub = p_ranges.add_subparsers(dest="ranges_command", required=True)
    p_refresh = ranges_sub.add_parser(
        "refresh", help="AWS ip-ranges.json, Google Cloud cloud.json, Azure ServiceTags_*.json, as downloaded "
                        "-> the compact file read beside the rules file")
    p_refresh.add_argument("files", nargs="+", metavar="FILE")
    p_refresh.add_argument("--out", required=True,
                           help="where to write it: provider_ranges.json in the folder of the rules file in use")
    args = parser.parse_args(argv)
    if args.command == "healthcheck":
        return healthcheck(args)
    if args.command == "ranges":
        return ranges_refresh(args.files, args.out)
    if args.command == "convert":
        from .inputs.convert import main as convert_main

        return convert_main(args.paths, args.out, args.profile)
    from .engine.state import StateError

    try:
        if args.command == "state":
            return state_show(args)
        if args.command == "exceptions":
            from .outputs.exceptions import draft

            try:
                print(draft(read_event(args.event, args.id), days=args.days), end="")
            except ValueError as exc:
                raise ConfigError(str(exc), args.event) from None
            return 0
        if args.command == "check-config":
            return check_config(args.file)
        config = build_config(args)
        preflight(config)
        from .hosts.logs import configure_logging

        configure_logging(config.telemetry.log_level, config.telemetry.log_format)
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
