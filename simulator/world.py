"""The whole replay: fleet history, then scenarios over a background of ordinary days.

``build_world`` is deterministic for a seed. It returns the records in event-time order and the
labels that say which identities each scenario concerns; the labels never enter the records.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .behaviour import DAY, normal_calls, render
from .fleet import START_NS, SimIdentity, build_fleet
from .records import SimRecord
from .scenarios import Label, Player, Scenario
from .vendor_shapes import OTEL, native_source, reshape

SHAPES = (OTEL, "vendor")

EVALUATION_DAYS = 2


@dataclass
class World:
    fleet: list[SimIdentity]
    records: list[SimRecord]
    labels: list[Label]
    history_end_ns: int
    end_ns: int

    @property
    def days(self) -> int:
        """Days of telemetry: the history, then the evaluation days."""
        return (self.end_ns - START_NS) // DAY

    @property
    def identity_ids(self) -> list[str]:
        return [i.identity_id for i in self.fleet]


def _shaped(ident: SimIdentity, call, record: SimRecord, shapes: str) -> SimRecord:
    """The record in the shape its step asks for, else in the world's: ``otel`` (the contract's
    attributes) or ``vendor`` (every record that has an audit log of its own, in that log's shape)."""
    source = (call.extra or {}).get("source") or (native_source(record, ident.archetype) if shapes == "vendor"
                                                  else OTEL)
    return reshape(record, ident.archetype, source) if source and source != OTEL else record


def build_world(scenarios: list[Scenario], identities: int = 120, days: int = 7, seed: int = 7,
                shapes: str = OTEL) -> World:
    if shapes not in SHAPES:
        raise ValueError(f"shapes: {shapes!r} is not one of {', '.join(SHAPES)}")
    rnd = random.Random(seed)
    wanted: dict[str, int] = {}
    for s in scenarios:
        wanted[s.targets] = wanted.get(s.targets, 0) + 1
    fleet = build_fleet(identities, seed, wanted)
    history_end = START_NS + days * DAY
    end = history_end + EVALUATION_DAYS * DAY
    player = Player(fleet, history_end, seed)
    played = []
    labels = []
    for scenario in sorted(scenarios, key=lambda s: s.name):
        calls, new_identities, label = player.play(scenario)
        played += calls
        fleet_new = [i for i in new_identities if i.active_until_ns is None or i.active_until_ns > i.active_from_ns]
        fleet += fleet_new
        labels.append(label)
    records: list[SimRecord] = []
    for ident in fleet:
        override = getattr(ident, "extra_override", None)
        spans = [(START_NS, end)]
        if override:
            spans = [(START_NS, override[0]), (override[1], end)]
        for lo, hi in spans:
            for call in normal_calls(ident, lo, hi, rnd):
                records.append(_shaped(ident, call, render(ident, call, rnd), shapes))
    for ident, call in played:
        records.append(_shaped(ident, call, render(ident, call, rnd), shapes))
    records.sort(key=lambda r: r.time_ns)
    return World(fleet, records, labels, history_end, end)
