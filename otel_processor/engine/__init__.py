"""The behaviour engine: per-identity and peer-group baselines, detectors, correlator, trust.

Contract used by every host (``pipeline.BatchProcessor``, the Rotel host, tests):

    engine = Engine(EngineConfig(), catalog=None)
    verdict = engine.observe(observation)   # Verdict: trust score, anomalies, convergence id
    events = engine.take_events()           # ConvergenceEvents decided since the last call
    engine.snapshot_to(path); engine.restore_from(path)

``observe`` must be called in event-time order per identity for the results to be meaningful,
and is thread-safe (Rotel calls processors from several threads).

May import: model, errors
"""

from __future__ import annotations

from .config import EngineConfig
from .engine import Engine

__all__ = ["Engine", "EngineConfig"]
