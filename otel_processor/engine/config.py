"""Behaviour-engine settings. Every field has a documented default (docs/settings.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class EngineConfig:
    """Windows, thresholds and warm-up of the behaviour engine. Times are event time, seconds."""

    enabled: bool = True
    # Identities tracked at once. New identities start on probation (this share of the room is
    # kept for them) and only push out other newcomers; warmed-up and catalogued identities are
    # settled, and a settled one gives way only after protect_idle_s of event time unseen.
    max_identities: int = 200_000
    probation_share: float = 0.25
    protect_idle_s: float = 30 * 86_400.0
    # An identity is judged on new values only after this much history and this many records
    # (Datadog's anomaly method never alerts on an entity it has not seen; Entra baselines 2+ days).
    warmup_s: float = 86_400.0
    warmup_records: int = 20
    # History after which confidence in the baseline is full.
    settled_s: float = 3 * 86_400.0
    # Volume, breadth and failures are counted per tumbling window of this length.
    window_s: float = 600.0
    # Closed windows with activity needed before volume and failure baselines are trusted.
    baseline_windows: int = 5
    # A window is anomalous at this multiple of the identity's busiest earlier window...
    volume_ratio: float = 5.0
    # ...and only above these absolute floors (Elastic fires at 20 secrets in 6 minutes).
    min_distinct_targets: int = 10
    min_records: int = 50
    min_authz_failures: int = 5
    # Schedule: history needed before an hour the identity never used counts as unusual.
    schedule_history_s: float = 3 * 86_400.0
    # Findings are fused over this sliding window.
    correlation_window_s: float = 6 * 3600.0
    # Score at which a convergence event is emitted (ERROR from 0.9).
    alert_threshold: float = 0.5
    # An incident resting only on new actions/targets, an unusual hour or a new action class waits
    # this long after its first finding, so that peers making the same change discount it.
    novelty_confirm_s: float = 600.0
    # An open incident is updated when its score rises by this much or a new facet joins.
    update_step: float = 0.1
    # An incident closes after this long without findings; a later one gets a new id.
    incident_quiet_s: float = 12 * 3600.0
    # Trust recovers with this half-life of quiet event time.
    trust_half_life_s: float = 6 * 3600.0
    # Peer discount: a change made by at least this share of a group's active members (and at
    # least peer_min_identities of them) within peer_window_s is a group change, not a compromise.
    peer_share: float = 0.3
    peer_min_identities: int = 3
    peer_window_s: float = 24 * 3600.0
    peer_discount: float = 0.2
    # Chain: how long a mailbox tampering and a consent stay linked to what follows.
    chain_window_s: float = 7 * 86_400.0
    # Credential split: one temporary key used from two networks with two clients within this.
    credential_window_s: float = 3600.0
    # A record this much older than its identity's latest is a backfill (old logs loaded again, a
    # late export): it adds to the identity's history and is compared against nothing.
    backfill_after_s: float = 6 * 3600.0
    # Event time more than this ahead of a record's arrival (the processor's clock) is the
    # sender's doing: the record is judged at arrival plus this, and marked nhi.time.skewed.
    max_future_skew_s: float = 300.0
    # Per-identity caps on remembered values, per dimension.
    max_actions: int = 96
    max_targets: int = 160
    max_networks: int = 32
    max_user_agents: int = 16
    max_countries: int = 16
    # Identity kinds that get convergence events. Humans are scored (trust) and can be links in
    # a chain, but their own behaviour is noisier and is not what this product judges.
    event_kinds: tuple[str, ...] = ("service_account", "api_key", "workload", "ci_job", "ai_agent",
                                    "oauth_app", "unknown")
    # Rules mapping incidents to security_rule.* (None: the packaged rules/rules.yaml).
    rules_file: str | None = None

    def validate(self) -> None:
        if self.backfill_after_s <= 0:
            raise ValueError("engine.backfill_after_s must be positive")
        if self.max_future_skew_s < 0:
            raise ValueError("engine.max_future_skew_s must not be negative")
        if self.max_identities < 1:
            raise ValueError("engine.max_identities must be at least 1")
        if not 0 < self.probation_share < 1 or self.protect_idle_s <= 0:
            raise ValueError("engine.probation_share must be in (0, 1) and engine.protect_idle_s positive")
        for name in ("window_s", "correlation_window_s", "incident_quiet_s", "trust_half_life_s",
                     "peer_window_s", "chain_window_s", "volume_ratio"):
            if getattr(self, name) <= 0:
                raise ValueError(f"engine.{name} must be positive")
        if not 0 < self.alert_threshold <= 1:
            raise ValueError("engine.alert_threshold must be in (0, 1]")
        if not 0 <= self.peer_discount <= 1 or not 0 < self.peer_share <= 1:
            raise ValueError("engine.peer_discount and engine.peer_share must be in [0, 1]")
        from ..model import IDENTITY_KINDS

        for kind in self.event_kinds:
            if kind not in IDENTITY_KINDS:
                raise ValueError(f"engine.event_kinds: {kind!r} is not one of {', '.join(IDENTITY_KINDS)}")
        for name in ("max_actions", "max_targets", "max_networks", "max_user_agents", "max_countries"):
            if not 1 <= getattr(self, name) <= 4096:
                raise ValueError(f"engine.{name} must be between 1 and 4096")
