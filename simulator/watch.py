"""``nhi-sim sink``: a downstream to point ``nhi-processor serve`` at by hand.

Prints each convergence event as it arrives, one line (event time, severity, identity, score,
rule, explanation), and every few seconds how many records arrived per signal. Nothing is kept
in memory, so it can run as long as the processor does.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
import threading
from collections import Counter
from typing import TextIO

from otel_processor.anyvalue import to_python

from .sink import CONVERGENCE_EVENT_NAME, OtlpSink


def event_line(record) -> str:
    """One convergence event (an OTLP log record) as one line a responder can read."""
    attrs = {kv.key: to_python(kv.value) for kv in record.attributes}
    when = dt.datetime.fromtimestamp(record.time_unix_nano / 1e9, dt.timezone.utc)
    score = attrs.get("nhi.convergence.score")
    score_text = f"{score:.2f}" if isinstance(score, (int, float)) else "?"
    version = attrs.get("nhi.convergence.version")
    update = f" (update {version})" if isinstance(version, int) and version > 1 else ""
    return (f"{when:%Y-%m-%d %H:%M:%S}Z {record.severity_text or '-':5} {attrs.get('nhi.identity.id', '?')} "
            f"score {score_text} [{attrs.get('security_rule.name', '?')}]{update}: {record.body.string_value}")


class Watcher:
    """Counts records per signal and prints events; thread-safe (the sink calls it from its workers)."""

    def __init__(self, out: TextIO = sys.stdout, json_out: TextIO | None = None):
        self.out = out
        self.json_out = json_out  # each event's attributes, one JSON object per line
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._printed: tuple = ()

    def on_request(self, signal_name: str, request) -> None:
        lines = []
        with self._lock:
            if signal_name == "traces":
                self.counts["spans"] += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            elif signal_name == "metrics":
                self.counts["metric data points"] += sum(
                    len(getattr(m, m.WhichOneof("data")).data_points) if m.WhichOneof("data") else 0
                    for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
            else:
                for rl in request.resource_logs:
                    for sl in rl.scope_logs:
                        for record in sl.log_records:
                            if record.event_name == CONVERGENCE_EVENT_NAME:
                                self.counts["convergence events"] += 1
                                lines.append(event_line(record))
                                if self.json_out is not None:
                                    attrs = {kv.key: to_python(kv.value) for kv in record.attributes}
                                    print(json.dumps({**attrs, "body": record.body.string_value}, default=str),
                                          file=self.json_out, flush=True)
                            else:
                                self.counts["log records"] += 1
            for line in lines:
                print(line, file=self.out, flush=True)

    def summary(self) -> str:
        with self._lock:
            parts = [f"{self.counts[k]:,} {k}" for k in ("spans", "log records", "metric data points",
                                                        "convergence events")]
        return "received: " + ", ".join(parts)

    def print_summary_if_changed(self) -> None:
        with self._lock:
            now = tuple(sorted(self.counts.items()))
            changed = now != self._printed
            self._printed = now
        if changed:
            print(self.summary(), file=self.out, flush=True)


def run_sink(listen: str, every_s: float = 10.0, out: TextIO = sys.stdout, stop: threading.Event | None = None,
             json_path: str | None = None) -> int:
    """``json_path``: also append each event's attributes there as a JSON line, which
    ``nhi-processor exceptions draft FILE [--id CONVERGENCE_ID]`` reads."""
    host, _, port = listen.rpartition(":")
    json_out = open(json_path, "a", encoding="utf-8") if json_path else None
    try:
        return _run(host, port, every_s, out, stop, Watcher(out, json_out))
    finally:
        if json_out is not None:
            json_out.close()


def _run(host: str, port: str, every_s: float, out: TextIO, stop: threading.Event | None, watcher: Watcher) -> int:
    stop = stop or threading.Event()
    with OtlpSink(host or "127.0.0.1", int(port), keep=False, on_request=watcher.on_request) as sink:
        print(f"nhi-sim sink: OTLP/gRPC on {sink.endpoint}; convergence events print as they arrive, "
              f"record counts every {every_s:g} s; Ctrl-C to stop", file=out, flush=True)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(every_s):
            watcher.print_summary_if_changed()
    print(watcher.summary(), file=out, flush=True)
    return 0
