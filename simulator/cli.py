"""``nhi-sim``: bench (the main job), replay, export, sink."""

from __future__ import annotations

import argparse
import sys

from otel_processor.errors import ConfigError

from .replay import ReplayError
from .scenarios import load_scenarios


def _world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenarios", nargs="*", help="scenario files or folders (default: the packaged scenarios/)")
    p.add_argument("--identities", type=int, default=120, help="fleet size (default 120)")
    p.add_argument("--days", type=int, default=7, help="days of history before the scenarios (default 7)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--shapes", choices=("otel", "vendor"), default="otel",
                   help="otel: every record as the contract's attributes (default); vendor: records that have an "
                        "audit log of their own (CloudTrail, Kubernetes, GCP, Entra ID, Microsoft 365) in its shape")
    p.add_argument("--batch-seconds", type=int, default=60, metavar="SECONDS",
                   help="seconds of event time one request holds at most (default 60: about what a Collector's "
                        "batch processor gathers in its 200 ms in a fast replay of a busy fleet); detection does "
                        "not depend on it, the number of requests does")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"


def main(argv: list[str] | None = None) -> int:
    from otel_processor.version import __version__

    parser = argparse.ArgumentParser(prog="nhi-sim", description=__doc__)
    parser.add_argument("--version", action="version", version=f"nhi-sim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="replay fleet and scenarios through the processor and score detection")
    _world_args(b)
    b.add_argument("--json", help="write the scores as JSON here")
    b.add_argument("--report", help="write an HTML report here")
    b.add_argument("--endpoint", help="benchmark an already running pipeline at this OTLP endpoint")
    b.add_argument("--sink-listen", default=None, help="with --endpoint: where the event sink listens (HOST:PORT)")
    b.add_argument("--speed", type=float, default=0.0)
    b.add_argument("--config", help="processor config for the embedded processor")
    b.add_argument("--exceptions", metavar="FILE",
                   help="run with these exceptions in force; fail (exit 1) if one keeps back an attack's event")
    b.add_argument("--no-progress", action="store_true")
    r = sub.add_parser("replay", help="send the fleet and scenarios (or a file) to an OTLP endpoint")
    _world_args(r)
    r.add_argument("--endpoint", required=True, help="host:port (gRPC) or http(s)://... (OTLP/HTTP)")
    r.add_argument("--speed", type=float, default=0.0, help="0 as fast as possible, 1 real time, N x real time")
    r.add_argument("--from", dest="from_file", help="replay this OTLP JSON lines file instead")
    r.add_argument("--no-progress", action="store_true")
    e = sub.add_parser("export", help="write the fleet and scenarios as OTLP JSON lines")
    _world_args(e)
    e.add_argument("--out", required=True)
    k = sub.add_parser("sink", help="an OTLP/gRPC downstream that prints convergence events and counts records")
    k.add_argument("--listen", default="127.0.0.1:24317", metavar="HOST:PORT",
                   help="where to listen (default 127.0.0.1:24317, where `nhi-processor serve` forwards by default)")
    k.add_argument("--every", type=float, default=10.0, metavar="SECONDS", help="how often to print record counts")
    k.add_argument("--json", metavar="FILE", help="also append each event's attributes to FILE as JSON lines "
                                                  "(what `nhi-processor exceptions draft FILE --id ID` reads)")
    args = parser.parse_args(argv)
    if args.command == "sink":
        from .watch import run_sink
        try:
            return run_sink(args.listen, args.every, json_path=args.json)
        except (OSError, ValueError) as exc:
            print(f"nhi-sim sink: {exc}", file=sys.stderr)
            return 2
    try:
        if args.command == "replay" and args.from_file:
            from .replay import read_jsonl, replay
            sent = replay(read_jsonl(args.from_file), args.endpoint, args.speed, None, not args.no_progress)
            print(f"{sent} records sent to {args.endpoint}")
            return 0
        scenarios = load_scenarios(args.scenarios or None)
        if args.command == "bench":
            from otel_processor.config import load_config

            from .bench import run_bench, table, write_json
            from .report import write_report
            config = load_config(args.config) if args.config else None
            try:
                result = run_bench(scenarios, args.identities, args.days, args.seed, args.endpoint,
                                   args.sink_listen, args.speed, config, not args.no_progress, args.shapes,
                                   args.exceptions, args.batch_seconds)
            except ValueError as exc:
                print(f"nhi-sim bench: {exc}", file=sys.stderr)
                return 2
            print(table(result))
            if args.json:
                write_json(result, args.json)
            if args.report:
                write_report(args.report, result, scenarios)
                print(f"report: {args.report}")
            verdict = exceptions_verdict(result, args.exceptions) if args.exceptions else 0
            missed = result.score.recall < 1.0 or bool(result.score.false_positive_identities)
            return 1 if missed or verdict else 0
        from .encode import batches
        from .world import build_world
        world = build_world(scenarios, args.identities, args.days, args.seed, args.shapes)
        if args.command == "export":
            from .replay import write_jsonl
            n = write_jsonl(batches(world.records, max_span_ns=args.batch_seconds * 10**9), args.out)
            print(f"{n} records written to {args.out}")
            return 0
        from .replay import replay
        if args.speed > 0:
            span_s = (world.records[-1].time_ns - world.records[0].time_ns) / 1e9 if world.records else 0.0
            print(f"replaying {span_s / 86400:.1f} days of event time at {args.speed:g}x real time: about "
                  f"{_duration(span_s / args.speed)} (--speed 0 sends as fast as the endpoint takes it)", flush=True)
        sent = replay(batches(world.records, max_span_ns=args.batch_seconds * 10**9), args.endpoint, args.speed,
                      len(world.records), not args.no_progress)
        print(f"{sent} records sent to {args.endpoint}")
        return 0
    except (ConfigError, ReplayError) as exc:
        print(f"nhi-sim: {exc}", file=sys.stderr)
        return 2


def exceptions_verdict(result, path: str) -> int:
    """The regression check before an exception is merged: 1 when one hid an attack's event."""
    held: dict[str, int] = {}
    for exception, _ in result.held:
        held[exception] = held.get(exception, 0) + 1
    print(f"exceptions {path}: " + (", ".join(f"{k} kept back {n} event{'' if n == 1 else 's'}"
                                              for k, n in sorted(held.items())) or "kept back no event"))
    from otel_processor.outputs.exceptions import load_exceptions

    for entry in load_exceptions(path).exceptions:
        if entry.id not in held:
            print(f"  {entry.id} kept back no event in this run: it matches nothing here (if it was drafted from "
                  f"an event, that event is not in this run, or the match is narrower than the event)")
    hidden = result.hidden_attacks()
    for exception, scenario, identity in hidden:
        print(f"  EXCEPTION HIDES AN ATTACK: {exception} kept back an event of attack {scenario} on {identity}")
    if hidden:
        return 1
    print("  no exception keeps back an event of any attack")
    return 0


if __name__ == "__main__":
    sys.exit(main())
