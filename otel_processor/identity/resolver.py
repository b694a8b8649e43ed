"""Resolves the identity that acted on a record by walking ``rules.RULES``; caches identities.

Results are cached by what decided them (the principal, the assumed-role ARN without its
session...), so a repeated principal costs one dictionary look-up after its first record.
The catalog overrides the kind, owner and group a rule infers and adds declared expectations.
"""

from __future__ import annotations

import threading

from ..model import AI_AGENT, CI_JOB, HUMAN, OAUTH_APP, SERVICE_ACCOUNT, WORKLOAD, Identity
from .principals import AWS_ASSUMED_ROLE, is_person_session, bounded_principal, classify_principal, name_stem
from .rules import FALLBACK, IDENTITY_KEYS, OWNER_OF_KEY, RULES, RecordContext

_GROUPED_KINDS = frozenset({SERVICE_ACCOUNT, WORKLOAD, OAUTH_APP, AI_AGENT, CI_JOB})


class Resolver:
    """Thread-safe; holds the catalog and a bounded cache (cleared whole when full)."""

    def __init__(self, catalog=None, cache_size: int = 65_536):
        self.catalog = catalog
        self._cache: dict[tuple, Identity] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def use_catalog(self, catalog) -> None:
        """A reloaded catalog; identities made with the old one are forgotten."""
        with self._lock:
            self.catalog = catalog
            self._cache = {}

    def resolve(self, rec: dict, res: dict, *, is_span: bool, span_kind: int = 0,
                is_consent: bool = False, audit_log: bool = False) -> Identity | None:
        """The identity that acted, or None when no rule matches.

        ``span_kind`` uses OTLP numbering (2 SERVER, 3 CLIENT, 4 PRODUCER, 1 INTERNAL).
        """
        present = rec.keys() & IDENTITY_KEYS
        if res:
            present |= res.keys() & IDENTITY_KEYS
        if len(present) == 1:
            # One identity attribute in all: only its rule can match, from that value alone.
            (key,) = present
            rule = OWNER_OF_KEY[key]
            if rule.from_value is not None and key in rec:
                found = rule.from_value(key, rec[key], self, rec)
                if found is not None:
                    return found
        ctx = RecordContext(rec, res, is_span, span_kind, is_consent, audit_log)
        if present:
            for rule in RULES:
                if not present.isdisjoint(rule.keys):
                    found = rule.resolve(ctx, self)
                    if found is not None:
                        return found
        return FALLBACK.resolve(ctx, self)

    # -- identity constructors the rules call (cached) ---------------------------------------
    def by_value(self, value: str, source: str) -> Identity:
        """A principal named by value (an ARN, a user id): its format decides the kind, else the
        catalog, else human."""
        value = bounded_principal(value)
        # An assumed-role session name is per use (an instance id, a run id), so the full ARN
        # rarely repeats; the ARN without it does, and decides the identity alone.
        session_key = None
        if ":assumed-role/" in value:
            head, _, tail = value.rpartition("/")
            if tail and not is_person_session(head.rpartition("/")[2], tail):  # a person's is the person
                session_key = ("session", head, source)
                hit = self._cache.get(session_key)
                if hit is not None:
                    return hit
        key = ("v", value, source)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = classify_principal(value)
        if session_key is not None and found is not None and AWS_ASSUMED_ROLE.match(value):
            key = session_key
        if found is not None:
            kind, principal, group = found
        else:
            kind, principal, group = (HUMAN, value, None)
            entry = self.catalog.lookup(value) if self.catalog is not None else None
            if entry is not None and entry.kind:
                kind = entry.kind
        ident = self.identity(kind, principal, source, group)
        self._store(key, ident)
        return ident

    def identity(self, kind: str, principal: str, source: str, group: str | None,
                 owner: str | None = None) -> Identity:
        """``owner``: who a credential identity belongs to, when the record says it (a GitHub
        token's human); the catalog's owner wins."""
        principal = bounded_principal(principal)
        key = (kind, principal, source, group, owner)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        environment = None
        if owner is not None:
            owner = bounded_principal(owner)
        exp_a: tuple[str, ...] = ()
        exp_t: tuple[str, ...] = ()
        exp_n: tuple[str, ...] = ()
        entry = self.catalog.lookup(principal) if self.catalog is not None else None
        if entry is None and self.catalog is not None:
            entry = self.catalog.lookup(f"{kind}:{principal}")
        if entry is not None:
            kind = entry.kind or kind
            owner, environment = entry.owner or owner, entry.environment
            group = entry.group or group
            exp_a, exp_t, exp_n = entry.expected_actions, entry.expected_targets, entry.expected_networks
        if group is None and kind in _GROUPED_KINDS:
            group = f"name:{name_stem(principal.split('@', 1)[0].split('/')[-1])}"
        ident = Identity(
            id=f"{kind}:{principal}", kind=kind, principal=principal, source=source, owner=owner,
            environment=environment, group=group, expected_actions=exp_a, expected_targets=exp_t,
            expected_networks=exp_n, cataloged=entry is not None,
        )
        self._store(key, ident)
        return ident

    def _store(self, key: tuple, ident: Identity) -> None:
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = ident
