"""Placeholder engine: neutral verdicts, no events. Replaced by the behaviour engine (issue 4)."""

from __future__ import annotations

import threading

from ..model import NEUTRAL_VERDICT, ConvergenceEvent, Observation, Verdict
from .config import EngineConfig


class Engine:
    def __init__(self, config: EngineConfig | None = None, catalog=None, metrics=None):
        self.config = config or EngineConfig()
        self.catalog = catalog
        self._lock = threading.Lock()
        self._identities: set[str] = set()

    def observe(self, obs: Observation) -> Verdict:
        self._identities.add(obs.identity.id)
        return NEUTRAL_VERDICT

    def take_events(self) -> list[ConvergenceEvent]:
        return []

    @property
    def identities_tracked(self) -> int:
        return len(self._identities)

    def snapshot_to(self, path: str) -> None:
        return None

    def restore_from(self, path: str) -> None:
        return None
