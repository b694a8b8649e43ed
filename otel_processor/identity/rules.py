"""The resolution rules of TELEMETRY.md section 1, one object per row, in the contract's order.

The first rule that returns an identity wins. Within a rule the record's attributes are read
before the resource's. Each rule names the attributes it reads (``keys``) so that the resolver
can skip a record carrying none of them, and route a record carrying exactly one straight to the
rule that owns it. To attribute a new source, add a rule here (in contract order) and a row to
the contract.

A rule's ``resolve(ctx, make)`` gets the record (``RecordContext``) and the resolver's cached
identity constructors (``make.identity(kind, principal, source, group)`` and
``make.by_value(value, source)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..model import AI_AGENT, API_KEY, CI_JOB, OAUTH_APP, WORKLOAD, Identity
from .credentials import CREDENTIAL_ATTRIBUTES, principal_of_credential
from .principals import (AWS_SSO_ROLE, MAX_PRINCIPAL, bounded_principal, classify_aws,
                         repo_owner)

SERVER = 2  # OTLP span kind


@dataclass(slots=True)
class RecordContext:
    """One record as resolution sees it. ``rec`` and ``res`` map attribute keys to Python values.

    ``audit_log`` marks log records that describe another actor (sign-in, IAM, email, cloud
    audit records): the resource that shipped them is not the actor. ``is_consent`` marks a
    consent record, whose ``oauth.client.id`` names the app being granted, not the actor.
    """

    rec: dict
    res: dict
    is_span: bool = False
    span_kind: int = 0
    is_consent: bool = False
    audit_log: bool = False


class IdentityMaker(Protocol):
    def identity(self, kind: str, principal: str, source: str, group: str | None,
                 owner: str | None = None) -> Identity: ...

    def by_value(self, value: str, source: str) -> Identity: ...


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    keys: frozenset[str]
    resolve: Callable[[RecordContext, IdentityMaker], Identity | None]
    # For a record whose only identity attribute is one of ``keys`` on the record itself: the
    # identity from that one value (and the record's other attributes, where the rule reads
    # them), without building a context (the common case on the hot path).
    from_value: Callable[[str, object, IdentityMaker, dict], Identity | None] | None = None


def _first(ctx: RecordContext, *keys: str) -> tuple[object, str] | None:
    """The first present value of ``keys``, record before resource, and the key it came from."""
    for attrs in (ctx.rec, ctx.res):
        for key in keys:
            value = attrs.get(key)
            if value:
                return value, key
    return None


def _agent(ctx: RecordContext, make: IdentityMaker) -> Identity | None:
    found = _first(ctx, "gen_ai.agent.id", "gen_ai.agent.name")
    return make.identity(AI_AGENT, str(found[0]), found[1], None) if found else None


def _pipeline(ctx: RecordContext, make: IdentityMaker) -> Identity | None:
    found = _first(ctx, "cicd.pipeline.name")
    if not found:
        return None
    name = found[0]
    repo = ctx.rec.get("vcs.repository.url.full") or ctx.res.get("vcs.repository.url.full")
    if not repo:
        return make.identity(CI_JOB, str(name), "cicd.pipeline.name", None)
    where = str(repo).split("://", 1)[-1].removesuffix(".git")
    owner = repo_owner(str(repo))
    return make.identity(CI_JOB, f"{where}:{name}", "cicd.pipeline.name", f"ci:{owner}" if owner else None)


def _oauth_client(ctx: RecordContext, make: IdentityMaker) -> Identity | None:
    if ctx.is_consent:  # the client id names the app being granted, not the actor
        return None
    found = _first(ctx, "oauth.client.id")
    return make.identity(OAUTH_APP, str(found[0]), "oauth.client.id", None) if found else None


def _credential_value(key: str, value, make: IdentityMaker, _attrs: dict | None = None) -> Identity | None:
    principal = principal_of_credential(value)
    return make.identity(API_KEY, principal, key, None) if principal else None


def _credential(ctx: RecordContext, make: IdentityMaker) -> Identity | None:
    for attrs in (ctx.rec, ctx.res):
        for key in CREDENTIAL_ATTRIBUTES:
            found = _credential_value(key, attrs.get(key), make)
            if found is not None:
                return found
    return None


def _value_of(key: str, value, make: IdentityMaker, _attrs: dict | None = None) -> Identity | None:
    return make.by_value(str(value), key) if value else None


def _aws_principal(ctx: RecordContext, make: IdentityMaker) -> Identity | None:
    found = _first(ctx, "aws.principal.arn")
    if not found:
        return None
    return _aws_value(found[1], found[0], make, ctx.rec if "aws.principal.arn" in ctx.rec else ctx.res)


def _aws_value(key: str, value, make: IdentityMaker, attrs: dict | None = None) -> Identity | None:
    """The principal's type, its credential and how it signed in decide before its name
    (``principals.classify_aws``); the ARN's format after that. ``attrs``: the attributes
    beside the ARN (the record's, or the resource's when the ARN is there)."""
    if not value:
        return None
    arn = bounded_principal(str(value))  # the sender's text: bounded before a pattern or a cache sees it
    attrs = attrs or {}
    if (":assumed-role/" in arn and "@" not in arn and AWS_SSO_ROLE not in arn
            and not attrs.get("aws.session.web_identity_provider")):
        return make.by_value(arn, key)  # a role session like most: its role decides, cached without the session
    decided = classify_aws(arn, _text(attrs.get("aws.principal.type")), _text(attrs.get("aws.access_key.id")),
                           attrs.get("aws.session.from_console") in (True, "true"),
                           _text(attrs.get("aws.session.web_identity_provider")))
    if decided is not None:
        kind, principal, group = decided
        return make.identity(kind, principal, key, group)
    return make.by_value(arn, key)


def _text(value) -> str | None:
    return str(value)[:MAX_PRINCIPAL] if value else None


def _user(ctx: RecordContext, make: IdentityMaker) -> Identity | None:
    # user.id on the record or resource before enduser.id on either.
    for key in ("user.id", "enduser.id"):
        found = _first(ctx, key)
        if found:
            return make.by_value(str(found[0]), key)
    return None


def service_rule(ctx: RecordContext, make: IdentityMaker) -> Identity | None:
    """Rule 7: the resource's service, for what the workload itself did (not on SERVER spans,
    not on audit records about someone else)."""
    res = ctx.res
    name = res.get("service.name")
    if not name or ctx.audit_log or (ctx.is_span and ctx.span_kind == SERVER):
        return None
    namespace = res.get("service.namespace")
    principal = f"{namespace}/{name}" if namespace else str(name)
    return make.identity(WORKLOAD, principal, "service.name", f"svcns:{namespace}" if namespace else None)


RULES: tuple[Rule, ...] = (
    Rule("ai_agent", frozenset({"gen_ai.agent.id", "gen_ai.agent.name"}), _agent),
    Rule("ci_job", frozenset({"cicd.pipeline.name", "vcs.repository.url.full"}), _pipeline),
    Rule("oauth_app", frozenset({"oauth.client.id"}), _oauth_client),
    Rule("api_key", frozenset(CREDENTIAL_ATTRIBUTES), _credential, _credential_value),
    Rule("aws_principal", frozenset({"aws.principal.arn"}), _aws_principal, _aws_value),
    Rule("user", frozenset({"user.id", "enduser.id"}), _user, _value_of),
)
# Rule 7 reads only the resource's service.name and applies when no other rule matched.
FALLBACK = Rule("workload_service", frozenset(), service_rule)

# Record attributes that can name the actor (rules 1-6). A record carrying none of them is
# resolved from its resource alone, which the pipeline caches once per resource.
IDENTITY_KEYS = frozenset().union(*(rule.keys for rule in RULES))
OWNER_OF_KEY = {key: rule for rule in RULES for key in rule.keys}
