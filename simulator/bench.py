"""``nhi-sim bench``: replay a fleet and every scenario through the processor and score coverage.

By default the processor runs embedded (``otel_processor.hosts.serve.service.Service`` on loopback) and
forwards to an ``OtlpSink``; with ``endpoint`` the already-running pipeline at that address is
measured instead, and its downstream must be pointed at the sink this bench starts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from otel_processor.config import ProcessorConfig, ServiceConfig
from simulator.sink import OtlpSink
from otel_processor.anyvalue import to_python as any_to_py

from .encode import batches
from .replay import replay
from .scenarios import Scenario
from .scoring import Event, Score, score
from .world import EVALUATION_DAYS, World, build_world


@dataclass
class BenchResult:
    score: Score
    world: World
    events: list[Event]
    trust: dict[str, list[tuple[int, float]]]
    records_sent: int
    records_received: int
    seconds: float
    alert_threshold: float = 0.5

    def peak_score(self, identities) -> float:
        """The highest score the processor gave any of these identities: 1 - the lowest
        nhi.trust.score on their records (trust drops to 1 - score when findings arrive)."""
        return max((1.0 - min(t for _, t in self.trust[i]) for i in identities if self.trust.get(i)), default=0.0)

    def peaks(self) -> dict[str, float]:
        """Each scenario's peak score. A benign scenario's leaves out identities another scenario
        attacks (a group change takes in every member of an archetype, the attacked ones too)."""
        attacked = {i for label in self.world.labels if label.kind == "attack" for i in label.identity_ids}
        return {row.name: self.peak_score(row.identities if row.kind == "attack"
                                          else [i for i in row.identities if i not in attacked])
                for row in self.score.scenarios}


def _attrs(record) -> dict:
    return {kv.key: any_to_py(kv.value) for kv in record.attributes}


def collect_events(sink: OtlpSink) -> list[Event]:
    out = []
    for rec in sink.convergence_events():
        a = _attrs(rec)
        out.append(Event(a.get("nhi.identity.id", ""), a.get("nhi.convergence.id", ""), rec.time_unix_nano,
                         int(a.get("nhi.convergence.first_seen", rec.time_unix_nano)),
                         float(a.get("nhi.convergence.score", 0.0)), rec.body.string_value,
                         list(a.get("nhi.convergence.findings") or []), a.get("security_rule.name", ""),
                         list(a.get("nhi.identity.related") or [])))
    return out


def collect_trust(sink: OtlpSink, identities: set[str]) -> dict[str, list[tuple[int, float]]]:
    """The nhi.trust.score the processor wrote on each watched identity's records, in time order."""
    series: dict[str, list[tuple[int, float]]] = {}
    for _, span in sink.spans():
        _trust_point(series, identities, span.attributes, span.start_time_unix_nano)
    for rec in sink.telemetry_log_records():
        _trust_point(series, identities, rec.attributes, rec.time_unix_nano)
    for points in series.values():
        points.sort()
    return series


def _trust_point(series, identities, attributes, t) -> None:
    ident = trust = None
    for kv in attributes:
        if kv.key == "nhi.identity.id":
            ident = kv.value.string_value
        elif kv.key == "nhi.trust.score":
            trust = kv.value.double_value
    if ident in identities and trust is not None:
        series.setdefault(ident, []).append((t, trust))


def run_bench(scenarios: list[Scenario], identities: int = 120, days: int = 7, seed: int = 7,
              endpoint: str | None = None, sink_listen: str | None = None, speed: float = 0.0,
              config: ProcessorConfig | None = None, progress: bool = True, shapes: str = "otel") -> BenchResult:
    started = time.monotonic()
    world = build_world(scenarios, identities, days, seed, shapes)
    host, _, port = (sink_listen or "127.0.0.1:0").rpartition(":")
    with OtlpSink(host, int(port)) as sink:
        service = None
        if endpoint is None:
            from otel_processor.hosts.serve.service import Service

            config = config or ProcessorConfig(state_dir=None)
            config.service = ServiceConfig(listen_grpc="127.0.0.1:0", listen_http=None, forward=sink.endpoint)
            service = Service(config).start()
            endpoint = f"127.0.0.1:{service.grpc_port}"
        try:
            sent = replay(batches(world.records), endpoint, speed, len(world.records), progress)
        finally:
            if service is not None:
                service.stop(grace=5)
        sink.wait_for(lambda s: len(s.spans()) + len(s.telemetry_log_records()) >= sent, timeout=30)
        received = len(sink.spans()) + len(sink.telemetry_log_records())
        events = collect_events(sink)
        watched = {i for label in world.labels for i in label.identity_ids}
        trust = collect_trust(sink, watched)
    result = score(events, world.labels, len(world.fleet), days + EVALUATION_DAYS)
    threshold = config.engine.alert_threshold if config is not None else 0.5
    return BenchResult(result, world, events, trust, sent, received, time.monotonic() - started, threshold)


def table(result: BenchResult) -> str:
    s = result.score
    lines = [f"{'scenario':33} {'kind':7} {'result':13} {'time to detect':>15} {'events':>7} {'peak score':>11}"]
    peaks = result.peaks()
    for row in s.scenarios:
        good = row.detected == (row.kind == "attack")
        verdict = ("detected" if row.detected else "missed") if row.kind == "attack" else \
                  ("FALSE ALARM" if row.detected else "quiet")
        ttd = f"{row.time_to_detect_s:.0f} s" if row.time_to_detect_s is not None else "-"
        peak = peaks[row.name]
        lines.append(f"{row.name:33} {row.kind:7} {verdict:13} {ttd:>15} {row.events:>7} {peak:>11.2f}"
                     f"{'' if good else '  <-'}")
    benign = [peaks[row.name] for row in s.scenarios if row.kind != "attack"]
    lines.append("")
    if benign:
        lines.append(f"highest benign peak score {max(benign):.2f} against the alert threshold "
                     f"{result.alert_threshold:.2f} (margin {result.alert_threshold - max(benign):+.2f})")
    lines.append(f"recall {s.recall:.2f}   precision {s.precision:.2f}   false-positive identities "
                 f"{len(s.false_positive_identities)} ({s.false_positives_per_1000_identity_days} per 1,000 "
                 f"identity-days)   events {s.events}")
    for ident in s.false_positive_identities:
        lines.append(f"  false positive: {ident}")
    lines.append(f"{result.records_sent} records replayed, {result.records_received} delivered downstream, "
                 f"{len(result.world.fleet)} identities, {result.seconds:.0f} s")
    return "\n".join(lines)


def write_json(result: BenchResult, path: str) -> None:
    data = result.score.to_json()
    data["peak_scores"] = {name: round(peak, 4) for name, peak in result.peaks().items()}
    data.update(records_sent=result.records_sent, records_received=result.records_received,
                identities=len(result.world.fleet), seconds=round(result.seconds, 1))
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
