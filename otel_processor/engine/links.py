"""Detectors that look beyond one identity's own history: the catalog and cross-identity chains.

Chain: a mailbox creates a forwarding or inbox rule (email signal), the same mailbox grants
consent to an OAuth app (IAM signal, the app named by ``oauth.client.id``), then that app signs
in and reads or exports (auth and app signals, identity ``oauth_app:<client id>``). Each step is a
finding on the identity that took it; the app's findings name the mailbox in ``related``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections import OrderedDict
from functools import lru_cache

from ..model import OAUTH_APP, Finding, Observation
from .features import Features

MAX_LINKS = 20_000
_RULE_ACTIONS = ("mailbox.forwarding_rule.created", "mailbox.rule.created")
CONSENT = "oauth.consent.granted"


@lru_cache(maxsize=4096)
def _networks(cidrs: tuple[str, ...]):
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _in_networks(address: str, cidrs: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in _networks(cidrs))


def catalog_findings(f: Features) -> list[Finding]:
    """Declared expectations (catalog) broken: each is strong, the organisation said so."""
    o = f.obs
    ident = o.identity
    out = []
    if ident.expected_networks and o.source_address and not _in_networks(o.source_address, ident.expected_networks):
        out.append(("network", f"acted from {o.source_address}, outside its declared networks "
                               f"{', '.join(ident.expected_networks)}"))
    if ident.expected_actions and not any(fnmatch.fnmatchcase(o.action, p) for p in ident.expected_actions):
        out.append(("action", f"performed {o.action!r}, not among its declared actions"))
    if ident.expected_targets and o.target and not any(fnmatch.fnmatchcase(o.target, p) for p in ident.expected_targets):
        out.append(("target", f"reached {o.target!r}, not among its declared targets"))
    # A credential used outside its declared networks is enough on its own; an undeclared action
    # or target needs another sign to agree.
    return [Finding(f"catalog.{what}", 0.85 if what == "network" else 0.6, reason, o.signal, o.time_ns,
                    o.trace_id, o.span_id) for what, reason in out]


class ChainTracker:
    """Bounded link tables: mailboxes recently tampered with, apps recently granted consent."""

    def __init__(self, window_ns: int):
        self.window_ns = window_ns
        self.tampered: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self.consents: OrderedDict[str, tuple[int, str, bool, str]] = OrderedDict()

    @staticmethod
    def _put(table: OrderedDict, key: str, value) -> None:
        table[key] = value
        table.move_to_end(key)
        if len(table) > MAX_LINKS:
            table.popitem(last=False)

    def observe(self, o: Observation) -> tuple[list[Finding], tuple[str, ...]]:
        """Findings for this observation's identity and the identities it is linked to."""
        ident = o.identity
        t = o.time_ns
        if o.action in _RULE_ACTIONS:
            external = o.details.get("email.external") == "true" or o.action == "mailbox.forwarding_rule.created"
            if not external:
                return [], ()
            to = o.details.get("email.to.address", "an external address")
            reason = f"created mailbox rule {o.action.split('.')[1]} sending mail to {to}"
            self._put(self.tampered, ident.id, (t, to))
            return [Finding("chain", 0.35, reason, o.signal, t, o.trace_id, o.span_id)], ()
        if o.action == CONSENT:
            app = o.details.get("oauth.client.id")
            if not app:
                return [], ()
            tamper = self.tampered.get(ident.id)
            after_tamper = tamper is not None and 0 <= t - tamper[0] <= self.window_ns
            scopes = o.details.get("oauth.scopes", "")
            self._put(self.consents, app, (t, ident.id, after_tamper, scopes))
            if after_tamper:
                reason = (f"granted consent to OAuth app {app} (scopes {scopes or 'unspecified'}) after "
                          f"creating a rule forwarding mail to {tamper[1]}")
                return [Finding("chain", 0.6, reason, o.signal, t, o.trace_id, o.span_id)], (f"{OAUTH_APP}:{app}",)
            return [], (f"{OAUTH_APP}:{app}",)
        if ident.kind == OAUTH_APP:
            link = self.consents.get(ident.principal)
            if link is not None and 0 <= t - link[0] <= self.window_ns:
                granted_at, grantor, after_tamper, scopes = link
                if after_tamper:
                    mins = (t - granted_at) / 60e9
                    reason = (f"{o.action!r} {mins:.0f} minutes after {grantor} granted it consent "
                              f"(scopes {scopes or 'unspecified'}) right after tampering with its mailbox")
                    return [Finding("chain", 0.9, reason, o.signal, t, o.trace_id, o.span_id)], (grantor,)
                return [], (grantor,)
        return [], ()

    def state(self) -> list:
        return [list(self.tampered.items()), list(self.consents.items())]

    def restore(self, s: list) -> None:
        self.tampered = OrderedDict((k, tuple(v)) for k, v in s[0])
        self.consents = OrderedDict((k, tuple(v)) for k, v in s[1])


class CredentialTracker:
    """One credential, two places at once: baseline-free, so it works from an identity's first minute.

    Keyed by the credential's holder, not by the role, because many instances legitimately share a
    role: the role session (``assumed-role/<role>/<session>``, where the session is an instance id
    or a run id) and the temporary key (``aws.access_key.id``). The same key used
    from another network *and* with another client family within ``window_ns`` of its first use
    is the mark of credentials lifted off the machine they were issued to (GuardDuty's
    InstanceCredentialExfiltration reasons the same way).
    """

    def __init__(self, window_ns: int = 3_600_000_000_000):
        self.window_ns = window_ns
        # First use of each credential, in two generations: when the newer one holds half of
        # MAX_LINKS, the older is forgotten at once. Bounded like a FIFO of MAX_LINKS, at the
        # cost of one dictionary store per new credential instead of an ordered-dict eviction.
        self.recent: dict[str, tuple[int, str, str, str]] = {}
        self.older: dict[str, tuple[int, str, str, str]] = {}

    def observe(self, f: Features) -> list[Finding]:
        o = f.obs
        if not f.network or not f.ua:
            return []
        out = []
        for key in (o.details.get("aws.session"), o.details.get("aws.access_key.id")):
            if key:
                out += self._check(key, f)
                if out:
                    break
        return out

    def _check(self, key: str, f: Features) -> list[Finding]:
        o = f.obs
        seen = self.recent.get(key)
        if seen is None:
            seen = self.older.get(key)
        if seen is None:
            if len(self.recent) >= MAX_LINKS // 2:
                self.older, self.recent = self.recent, {}
            self.recent[key] = (o.time_ns, f.network, f.ua, o.source_address or "")
            return []
        t0, network, ua, address = seen
        if network == f.network or ua == f.ua or o.time_ns - t0 > self.window_ns:
            return []
        what = f"session {key.rsplit('/', 1)[-1]}" if key.startswith("arn:") else f"temporary key {key[:8]}..."
        reason = (f"{what} first used from {address} by {ua!r} was used "
                  f"{(o.time_ns - t0) / 1e9:.0f} s later from {o.source_address} by {f.ua!r}")
        return [Finding("credential_split", 0.85, reason, o.signal, o.time_ns, o.trace_id, o.span_id)]

    def state(self) -> list:
        return [list(self.older.items()), list(self.recent.items())]

    def restore(self, s: list) -> None:
        if s and s[0] and isinstance(s[0][0], str):  # a snapshot from before the generations
            s = [[], s]
        self.older = {k: tuple(v) for k, v in s[0]} if s else {}
        self.recent = {k: tuple(v) for k, v in s[1]} if s else {}
