"""Who acted: identity resolution (TELEMETRY.md section 1).

Rules are tried in order; for each rule the record's attributes are read before the resource's,
and the first rule that matches wins. Results are cached by the deciding (attribute, value) pair,
so a resource or a repeated principal costs one dictionary look-up after the first record.

Peer group (``Identity.group``), when the catalog gives none, is derived from the principal:
Kubernetes namespace (``k8s:<ns>``), GCP project (``gcp:<project>``), AWS account and role-name
stem (``aws:<acct>:<stem>``), SPIFFE trust domain and first path segment, CI repository owner
(``ci:<owner>``), ``service.namespace`` for workloads named by service, and the name stem of
``svc-``/``sa-``/``bot-`` names (trailing numbers, environments and hex ids removed). The stem
rule is what lets a fleet of ``svc-billing-7``, ``svc-billing-8`` be judged together.
"""

from __future__ import annotations

import hashlib
import re
import threading

from .model import (
    AI_AGENT,
    API_KEY,
    CI_JOB,
    HUMAN,
    OAUTH_APP,
    SERVICE_ACCOUNT,
    WORKLOAD,
    Identity,
)

CREDENTIAL_ATTRIBUTES = ("http.request.header.authorization", "http.request.header.x-api-key")
CONSENT_ACTION = "oauth.consent.granted"
# Record attributes that can name the actor (rules 1-6). A record carrying none of them is
# resolved from its resource alone, which the pipeline caches once per resource.
IDENTITY_KEYS = frozenset({
    "gen_ai.agent.id", "gen_ai.agent.name", "cicd.pipeline.name", "vcs.repository.url.full",
    "oauth.client.id", *CREDENTIAL_ATTRIBUTES, "aws.principal.arn", "user.id", "enduser.id",
})
_AGENT_KEYS = frozenset({"gen_ai.agent.id", "gen_ai.agent.name", "cicd.pipeline.name", "vcs.repository.url.full",
                         "oauth.client.id"})
_BY_VALUE_KEYS = frozenset({"aws.principal.arn", "user.id", "enduser.id"})

_K8S_SA = re.compile(r"^system:serviceaccount:([^:]+):([^:]+)$")
_AWS_ROLE = re.compile(r"^arn:aws[\w-]*:iam::(\d+):role/(?:.*/)?([^/]+)$")
_AWS_ASSUMED = re.compile(r"^arn:aws[\w-]*:sts::(\d+):assumed-role/([^/]+)/.+$")
_AWS_USER = re.compile(r"^arn:aws[\w-]*:iam::(\d+):user/(?:.*/)?([^/]+)$")
_GCP_SA = re.compile(r"^([^@]+)@([^.]+)\.iam\.gserviceaccount\.com$")
_SPIFFE = re.compile(r"^spiffe://([^/]+)(/[^/]*)?")
_GH_OIDC = re.compile(r"^repo:([^/:]+)/([^:]+)(:.*)?$")
_NHI_NAME = re.compile(r"^(svc|sa|bot)[-_]|\[bot\]$", re.IGNORECASE)
_STEM_TAIL = re.compile(
    r"([-_.](\d+|[0-9a-f]{6,}|prod|production|staging|stage|dev|test|qa|blue|green|canary|v\d+))+$",
    re.IGNORECASE,
)


def fingerprint(secret: str) -> str:
    """Stable, non-reversible name for a credential: 16 hex of SHA-256 of the token itself.

    The auth scheme word (``Bearer``, ``Basic``, ``ApiKey``...) is dropped first so that the same
    token sent with or without it is the same identity.
    """
    token = secret.strip()
    scheme, sep, rest = token.partition(" ")
    if sep and rest and scheme.isalpha() and len(scheme) <= 16:
        token = rest.strip()
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def masked(secret: str) -> str:
    """What replaces a credential value in forwarded telemetry."""
    return "sha256:" + fingerprint(secret)


def name_stem(name: str) -> str:
    """``svc-billing-7`` and ``svc-billing-prod`` share the stem ``svc-billing``."""
    stem = _STEM_TAIL.sub("", name)
    return stem or name


def classify_principal(value: str) -> tuple[str, str, str | None] | None:
    """Recognise a non-human principal by its format: (kind, canonical principal, group) or None."""
    m = _K8S_SA.match(value)
    if m:
        return WORKLOAD, value, f"k8s:{m.group(1)}"
    m = _AWS_ASSUMED.match(value)
    if m:
        acct, role = m.group(1), m.group(2)
        # The session name is per-use (an instance id, a CI run id): not part of the identity.
        return WORKLOAD, f"arn:aws:iam::{acct}:role/{role}", f"aws:{acct}:{name_stem(role)}"
    m = _AWS_ROLE.match(value)
    if m:
        acct, role = m.group(1), m.group(2)
        return WORKLOAD, f"arn:aws:iam::{acct}:role/{role}", f"aws:{acct}:{name_stem(role)}"
    m = _GCP_SA.match(value)
    if m:
        return SERVICE_ACCOUNT, value, f"gcp:{m.group(2)}"
    m = _SPIFFE.match(value)
    if m:
        return WORKLOAD, value, f"spiffe:{m.group(1)}{m.group(2) or ''}"
    m = _GH_OIDC.match(value)
    if m:
        return CI_JOB, value, f"ci:{m.group(1)}"
    m = _AWS_USER.match(value)
    if m:
        user = m.group(2)
        if _NHI_NAME.search(user):
            return SERVICE_ACCOUNT, value, f"aws:{m.group(1)}:{name_stem(user)}"
        return None
    if _NHI_NAME.search(value):
        local = value.split("@", 1)[0]
        return SERVICE_ACCOUNT, value, f"name:{name_stem(local.removesuffix('[bot]'))}"
    return None


def _repo_owner(url: str) -> str | None:
    path = url.split("://", 1)[-1]
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2:
        return parts[1] if "." in parts[0] else parts[0]
    return None


class Resolver:
    """Resolves identities; holds the catalog and a bounded cache. Thread-safe."""

    def __init__(self, catalog=None, cache_size: int = 65_536):
        self.catalog = catalog
        self._cache: dict[tuple, Identity] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # The attribute dictionaries map key -> python value (str, int, float, bool, list...).
    def resolve(self, rec: dict, res: dict, *, is_span: bool, span_kind: int = 0,
                is_consent: bool = False, audit_log: bool = False) -> Identity | None:
        """The identity that acted, or None when no rule matches.

        ``span_kind`` uses OTLP numbering (2 SERVER, 3 CLIENT, 4 PRODUCER, 1 INTERNAL).
        ``audit_log`` marks log records that describe another actor (sign-in, IAM, email, cloud
        audit records): the resource that shipped them is not the actor.
        """
        present = rec.keys() & IDENTITY_KEYS
        if res:
            present |= res.keys() & IDENTITY_KEYS
        if not present:
            return self._service(res, is_span, span_kind, audit_log)
        if not present.isdisjoint(_AGENT_KEYS):
            return self._rules(rec, res, is_span, span_kind, is_consent, audit_log)
        # Fast path for the common cases: one deciding key, on the record.
        if len(present) == 1:
            (key,) = present
            v = rec.get(key)
            if v:
                if key in _BY_VALUE_KEYS:
                    return self._by_value(str(v), key)
                if key in CREDENTIAL_ATTRIBUTES:
                    if isinstance(v, list):
                        v = v[0] if v else None
                    if v:
                        raw = str(v)
                        principal = raw[7:] if raw.startswith("sha256:") else fingerprint(raw)
                        return self._identity(API_KEY, principal, key, None)
        return self._rules(rec, res, is_span, span_kind, is_consent, audit_log)

    def _service(self, res: dict, is_span: bool, span_kind: int, audit_log: bool) -> Identity | None:
        """Rule 7: the resource's service, for what the workload itself did."""
        name = res.get("service.name")
        if name and not audit_log and (not is_span or span_kind != 2):
            ns = res.get("service.namespace")
            principal = f"{ns}/{name}" if ns else str(name)
            return self._identity(WORKLOAD, principal, "service.name", f"svcns:{ns}" if ns else None)
        return None

    def _rules(self, rec: dict, res: dict, is_span: bool, span_kind: int, is_consent: bool,
               audit_log: bool) -> Identity | None:
        """Every rule in order, record before resource (TELEMETRY.md section 1)."""
        for attrs in (rec, res):
            v = attrs.get("gen_ai.agent.id") or attrs.get("gen_ai.agent.name")
            if v:
                src = "gen_ai.agent.id" if attrs.get("gen_ai.agent.id") else "gen_ai.agent.name"
                return self._identity(AI_AGENT, str(v), src, None)
        for attrs in (rec, res):
            v = attrs.get("cicd.pipeline.name")
            if v:
                repo = rec.get("vcs.repository.url.full") or res.get("vcs.repository.url.full")
                if repo:
                    repo_s = str(repo).split("://", 1)[-1].removesuffix(".git")
                    owner = _repo_owner(str(repo))
                    return self._identity(CI_JOB, f"{repo_s}:{v}", "cicd.pipeline.name",
                                          f"ci:{owner}" if owner else None)
                return self._identity(CI_JOB, str(v), "cicd.pipeline.name", None)
        if not is_consent:
            for attrs in (rec, res):
                v = attrs.get("oauth.client.id")
                if v:
                    return self._identity(OAUTH_APP, str(v), "oauth.client.id", None)
        for attrs in (rec, res):
            for key in CREDENTIAL_ATTRIBUTES:
                v = attrs.get(key)
                if isinstance(v, list):
                    v = v[0] if v else None
                if v:
                    raw = str(v)
                    if raw.startswith("sha256:"):  # already masked upstream
                        return self._identity(API_KEY, raw[7:], key, None)
                    return self._identity(API_KEY, fingerprint(raw), key, None)
        for attrs in (rec, res):
            v = attrs.get("aws.principal.arn")
            if v:
                return self._by_value(str(v), "aws.principal.arn")
        for key in ("user.id", "enduser.id"):
            for attrs in (rec, res):
                v = attrs.get(key)
                if v:
                    return self._by_value(str(v), key)
        return self._service(res, is_span, span_kind, audit_log)

    def _by_value(self, value: str, source: str) -> Identity:
        # An assumed-role session name is per use (an instance id, a run id), so the full ARN
        # rarely repeats; the ARN without it does, and decides the identity alone.
        session_key = None
        if ":assumed-role/" in value:
            head, _, tail = value.rpartition("/")
            if tail:
                session_key = ("session", head, source)
                hit = self._cache.get(session_key)
                if hit is not None:
                    return hit
        key = ("v", value, source)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = classify_principal(value)
        if session_key is not None and found is not None and _AWS_ASSUMED.match(value):
            key = session_key
        if found is not None:
            kind, principal, group = found
        else:
            kind, principal, group = (HUMAN, value, None)
            entry = self.catalog.lookup(value) if self.catalog is not None else None
            if entry is not None and entry.kind:
                kind = entry.kind
        ident = self._identity(kind, principal, source, group)
        self._store(key, ident)
        return ident

    def _identity(self, kind: str, principal: str, source: str, group: str | None) -> Identity:
        key = (kind, principal, source, group)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        owner = environment = None
        exp_a: tuple[str, ...] = ()
        exp_t: tuple[str, ...] = ()
        exp_n: tuple[str, ...] = ()
        entry = self.catalog.lookup(principal) if self.catalog is not None else None
        if entry is None and self.catalog is not None:
            entry = self.catalog.lookup(f"{kind}:{principal}")
        if entry is not None:
            kind = entry.kind or kind
            owner, environment = entry.owner, entry.environment
            group = entry.group or group
            exp_a, exp_t, exp_n = entry.expected_actions, entry.expected_targets, entry.expected_networks
        if group is None and kind in (SERVICE_ACCOUNT, WORKLOAD, OAUTH_APP, AI_AGENT, CI_JOB):
            group = f"name:{name_stem(principal.split('@', 1)[0].split('/')[-1])}"
        ident = Identity(
            id=f"{kind}:{principal}", kind=kind, principal=principal, source=source, owner=owner,
            environment=environment, group=group, expected_actions=exp_a, expected_targets=exp_t,
            expected_networks=exp_n,
        )
        self._store(key, ident)
        return ident

    def _store(self, key: tuple, ident: Identity) -> None:
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = ident
