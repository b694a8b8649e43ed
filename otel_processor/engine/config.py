"""Behaviour-engine settings. Every field has a documented default (README settings table)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineConfig:
    """Windows, thresholds and warm-up of the behaviour engine.

    Owned by the engine; the fields below are the minimum the rest of the processor relies on.
    """

    enabled: bool = True
    max_identities: int = 200_000

    def validate(self) -> None:
        if self.max_identities < 1:
            raise ValueError("engine.max_identities must be at least 1")
