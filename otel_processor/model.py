"""Plain data shared by every stage: who acted, what they did, what the engine concluded.

These types are the contract between identity resolution (``resolve``), observation
(``observe``), the behaviour engine (``engine``) and event encoding (``events``). They are
deliberately free of protobuf so that the engine can be tested and hosted without OTLP.

May import: (no other room)
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Identity kinds, TELEMETRY.md section 3.
SERVICE_ACCOUNT = "service_account"
API_KEY = "api_key"
WORKLOAD = "workload"
CI_JOB = "ci_job"
AI_AGENT = "ai_agent"
OAUTH_APP = "oauth_app"
HUMAN = "human"
UNKNOWN = "unknown"
IDENTITY_KINDS = (SERVICE_ACCOUNT, API_KEY, WORKLOAD, CI_JOB, AI_AGENT, OAUTH_APP, HUMAN, UNKNOWN)

# Signals, TELEMETRY.md section 2.
SIGNALS = ("auth", "email", "iam", "ci", "agent", "app")

# Outcomes.
SUCCESS = "success"
FAILURE = "failure"
UNKNOWN_OUTCOME = "unknown"


@dataclass(slots=True, frozen=True)
class Identity:
    """One resolved actor. ``id`` is the canonical ``<kind>:<principal>``.

    ``group`` is the peer group the engine compares the identity with (catalog group, else one
    derived from the principal: Kubernetes namespace, service namespace, CI repository owner,
    AWS role name stem...). ``expected_*`` come from the catalog and are empty when undeclared.
    """

    id: str
    kind: str
    principal: str
    source: str
    owner: str | None = None
    environment: str | None = None
    group: str | None = None
    expected_actions: tuple[str, ...] = ()
    expected_targets: tuple[str, ...] = ()
    expected_networks: tuple[str, ...] = ()
    cataloged: bool = False  # declared in the identity catalog: its baseline is never evicted


@dataclass(slots=True)
class Observation:
    """One span or log record read as *an identity doing something* (TELEMETRY.md section 2).

    ``time_ns`` is event time, the only clock the engine knows. ``details`` carries the few
    signal-specific values the engine's chain and sequence logic need (for example
    ``oauth.client.id`` on a consent, ``email.to.address`` on a forwarding rule,
    ``process.command_line`` on a CI step); it is empty for most records so that the hot path
    stays allocation-light.
    """

    identity: Identity
    time_ns: int
    signal: str
    action: str
    target: str | None = None
    source_address: str | None = None
    user_agent: str | None = None
    country: str | None = None
    locality: str | None = None
    outcome: str = UNKNOWN_OUTCOME
    # "authz" for authorization denials (HTTP 401/403, AccessDenied*, UnauthorizedOperation...),
    # "server" for 5xx / unavailable, "other" for any other failure; None on success.
    failure_kind: str | None = None
    volume: float = 1.0
    trace_id: bytes = b""
    span_id: bytes = b""
    details: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Verdict:
    """What the engine says about one observation; written back onto the record."""

    trust_score: float = 1.0
    anomalies: tuple[str, ...] = ()
    convergence_id: str | None = None


NEUTRAL_VERDICT = Verdict()


@dataclass(slots=True)
class Finding:
    """One detector's opinion of one observation: a score in [0, 1] and a reason in words."""

    detector: str
    score: float
    reason: str
    signal: str
    time_ns: int
    trace_id: bytes = b""
    span_id: bytes = b""


# facts["action" + FACT_OVERFLOW]: the event saw more actions than it keeps, so nothing that
# checks them value by value (an exception) may vouch for it.
FACT_OVERFLOW = "+"

@dataclass(slots=True)
class ConvergenceEvent:
    """One incident for one identity (TELEMETRY.md section 4), updated as it grows.

    A later update of the same incident keeps ``convergence_id``; ``version`` counts updates.
    """

    convergence_id: str
    identity: Identity
    score: float
    signals: tuple[str, ...]
    findings: tuple[str, ...]
    first_seen_ns: int
    last_seen_ns: int
    time_ns: int
    trace_id: bytes
    span_id: bytes
    evidence_trace_ids: tuple[str, ...]
    related_identities: tuple[str, ...]
    body: str
    rule_name: str
    rule_category: str
    rule_references: tuple[str, ...]
    rule_description: str
    version: int = 1
    # Values of the records behind the findings, latest last (engine/correlator.py FACT_NAMES):
    # source.address, user_agent.original, geo.country.iso_code, network, action, target,
    # credential, record_id. ``name + FACT_OVERFLOW`` present: more values were seen than kept.
    facts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    response: str = ""  # the suggested first step (rules.yaml ``responses``)
    baseline: dict[str, int] = field(default_factory=dict)  # records and known values when decided
