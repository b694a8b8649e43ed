"""``nhi-sim bench``: replay a fleet and every scenario through the processor and score coverage.

By default the processor runs embedded (``otel_processor.hosts.serve.service.Service`` on loopback) and
forwards to an ``OtlpSink``; with ``endpoint`` the already-running pipeline at that address is
measured instead, and its downstream must be pointed at the sink this bench starts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from otel_processor.config import ProcessorConfig, ServiceConfig
from simulator.sink import OtlpSink
from otel_processor.anyvalue import to_python as any_to_py

from .encode import batches
from .replay import replay
from .scenarios import Scenario
from .scoring import GRACE_NS, Event, Score, score
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
    timeline: dict[str, list[tuple[int, str, list[str]]]] = field(default_factory=dict)
    # Events an exception kept back (--exceptions): (exception id, event)
    held: list[tuple[str, Event]] = field(default_factory=list)

    def hidden_attacks(self) -> list[tuple[str, str, str]]:
        """(exception, attack scenario, identity) for every event an exception kept back that
        falls in an attack's window on one of its identities: an exception must never do that."""
        out = []
        for label in self.world.labels:
            if label.kind != "attack":
                continue
            for exception, e in self.held:
                if e.identity_id in label.identity_ids and label.start_ns <= e.time_ns <= label.end_ns + GRACE_NS:
                    out.append((exception, label.scenario, e.identity_id))
        return sorted(set(out))

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
                         list(a.get("nhi.identity.related") or []), int(a.get("nhi.convergence.version", 1)),
                         a.get("nhi.convergence.severity", ""),
                         list(a.get("threat.technique.id") or []) + list(a.get("nhi.owasp.id") or [])))
    return out


def event_of(e) -> Event:
    """A processor's ConvergenceEvent as the scorer reads events."""
    return Event(e.identity.id, e.convergence_id, e.time_ns, e.first_seen_ns, e.score, e.body, list(e.findings),
                 e.rule_name, list(e.related_identities), e.version, "", list(e.rule_references))


# What the report's timeline shows around each scenario: the records of its identities from an
# hour before to an hour after its window, with the detectors each tripped (nhi.anomaly).
TIMELINE_MARGIN_NS = 3600 * 10**9
_TIMELINE_KEYS = frozenset({"nhi.identity.id", "nhi.anomaly", "event.action", "rpc.service", "rpc.method"})


def collect_timeline(sink: OtlpSink, labels) -> dict[str, list[tuple[int, str, list[str]]]]:
    """identity -> [(time, action, anomalies)] within its scenarios' windows, time-ordered."""
    windows: dict[str, list[tuple[int, int]]] = {}
    for label in labels:
        for ident in label.identity_ids:
            windows.setdefault(ident, []).append((label.start_ns - TIMELINE_MARGIN_NS,
                                                  label.end_ns + TIMELINE_MARGIN_NS))
    out: dict[str, list[tuple[int, str, list[str]]]] = {}

    def add(attributes, t: int, name: str) -> None:
        a = {kv.key: kv.value for kv in attributes if kv.key in _TIMELINE_KEYS}
        ident = a["nhi.identity.id"].string_value if "nhi.identity.id" in a else None
        if ident not in windows or not any(lo <= t <= hi for lo, hi in windows[ident]):
            return
        if "event.action" in a:
            action = a["event.action"].string_value
        elif "rpc.method" in a:
            action = f"{a['rpc.service'].string_value if 'rpc.service' in a else ''}/{a['rpc.method'].string_value}"
        else:
            action = name
        anomalies = [v.string_value for v in a["nhi.anomaly"].array_value.values] if "nhi.anomaly" in a else []
        out.setdefault(ident, []).append((t, action or "(unnamed)", anomalies))

    for _, span in sink.spans():
        add(span.attributes, span.start_time_unix_nano, span.name)
    for rec in sink.telemetry_log_records():
        add(rec.attributes, rec.time_unix_nano, rec.event_name)
    for points in out.values():
        points.sort()
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
              config: ProcessorConfig | None = None, progress: bool = True, shapes: str = "otel",
              exceptions: str | None = None, batch_seconds: int = 60) -> BenchResult:
    """``exceptions``: an exceptions file to run the embedded processor with; what it kept back
    is in ``BenchResult.held`` (see ``hidden_attacks``). ``batch_seconds``: event time one request
    holds at most (``simulator.encode.batches``)."""
    if exceptions and endpoint is not None:
        raise ValueError("--exceptions applies to the embedded processor, not to one at --endpoint")
    started = time.monotonic()
    held: list[tuple[str, Event]] = []
    world = build_world(scenarios, identities, days, seed, shapes)
    host, _, port = (sink_listen or "127.0.0.1:0").rpartition(":")
    with OtlpSink(host, int(port)) as sink:
        service = None
        if endpoint is None:
            from otel_processor.hosts.serve.service import Service

            config = config or ProcessorConfig(state_dir=None)
            config.service = ServiceConfig(listen_grpc="127.0.0.1:0", listen_http=None, listen_admin=None,
                                           forward=sink.endpoint)
            if exceptions:
                config.exceptions = exceptions
            service = Service(config).start()
            endpoint = f"127.0.0.1:{service.grpc_port}"
        try:
            sent = replay(batches(world.records, max_span_ns=batch_seconds * 10**9), endpoint, speed,
                          len(world.records), progress)
        finally:
            if service is not None:
                service.stop(grace=5)
                held = [(exception, event_of(e)) for e, exception in service.gate.held]
        sink.wait_for(lambda s: len(s.spans()) + len(s.telemetry_log_records()) >= sent, timeout=30)
        received = len(sink.spans()) + len(sink.telemetry_log_records())
        events = collect_events(sink)
        watched = {i for label in world.labels for i in label.identity_ids}
        trust = collect_trust(sink, watched)
        timeline = collect_timeline(sink, world.labels)
    result = score(events, world.labels, len(world.fleet), days + EVALUATION_DAYS)
    threshold = config.engine.alert_threshold if config is not None else 0.5
    return BenchResult(result, world, events, trust, sent, received, time.monotonic() - started, threshold,
                       timeline, held)


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
        peak, threshold = max(benign), result.alert_threshold
        raised = sum(1 for row in s.scenarios if row.kind != "attack" and row.detected)
        lines.append(f"highest benign peak score {peak:.2f}, {'above' if peak >= threshold else 'below'} the alert "
                     f"threshold {threshold:.2f}; benign scenarios that raised an event: {raised}")
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
