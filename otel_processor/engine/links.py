"""Detectors that look beyond one identity's own history: the catalog and cross-identity chains.

Chain: a mailbox creates a forwarding or inbox rule (email signal), the same mailbox grants
consent to an OAuth app (IAM signal, the app named by ``oauth.client.id``), then that app signs
in and reads or exports (auth and app signals, identity ``oauth_app:<client id>``). Each step is a
finding on the identity that took it; the app's findings name the mailbox in ``related``.

Links are made in event time, whatever order the records arrive in: a rule whose record comes
after the consent's (the same request's resources in another order, a late delivery) still
completes the chain, and an app whose activity arrived before the consent is still raised. A
finding about an identity other than the one whose record is observed is returned as
``(identity id, finding, related)`` for the engine to add to that identity's case.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections import OrderedDict
from functools import lru_cache

from ..model import OAUTH_APP, Finding, Observation
from .features import Features
from .first_sight import memo_search

Elsewhere = tuple  # (identity id, Finding, related identities): a finding about another identity

MAX_LINKS = 20_000
MAX_ACTIVITY = 8
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
    """Bounded link tables: mailboxes recently tampered with, apps recently granted consent (by
    app and by grantor), and each app's latest activity."""

    def __init__(self, window_ns: int):
        self.window_ns = window_ns
        self.tampered: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self.consents: OrderedDict[str, tuple[int, str, bool, str]] = OrderedDict()
        self.granted: OrderedDict[str, str] = OrderedDict()  # grantor -> the app it last consented to
        # app -> its latest MAX_ACTIVITY records as (time, action, signal, trace id, span id),
        # time-ordered: a late consent or rule links to the first of them after the consent
        self.activity: OrderedDict[str, list] = OrderedDict()

    @staticmethod
    def _put(table: OrderedDict, key: str, value) -> None:
        table[key] = value
        table.move_to_end(key)
        if len(table) > MAX_LINKS:
            table.popitem(last=False)

    def observe(self, o: Observation) -> tuple[list[Finding], tuple[str, ...], list[Elsewhere]]:
        """Findings for this observation's identity, the identities it is linked to, and findings
        for other identities that this (late) record completes a chain for."""
        ident = o.identity
        t = o.time_ns
        if o.action in _RULE_ACTIONS:
            external = o.details.get("email.external") == "true" or o.action == "mailbox.forwarding_rule.created"
            if not external:
                return [], (), []
            to = o.details.get("email.to.address", "an external address")
            reason = f"created mailbox rule {o.action.split('.')[1]} sending mail to {to}"
            earlier = self.tampered.get(ident.id)
            # the earliest rule within the window is the one a consent is measured from
            if earlier is None or not 0 <= t - earlier[0] <= self.window_ns:
                self._put(self.tampered, ident.id, (t, to))
            found = [Finding("chain", 0.35, reason, o.signal, t, o.trace_id, o.span_id)]
            return found, *self._late_tamper(ident.id, t, to, o)
        if o.action == CONSENT:
            app = o.details.get("oauth.client.id")
            if not app:
                return [], (), []
            tamper = self.tampered.get(ident.id)
            after_tamper = tamper is not None and 0 <= t - tamper[0] <= self.window_ns
            scopes = o.details.get("oauth.scopes", "")
            self._put(self.consents, app, (t, ident.id, after_tamper, scopes))
            self._put(self.granted, ident.id, app)
            linked = (f"{OAUTH_APP}:{app}",)
            if not after_tamper:
                return [], linked, []
            return ([Finding("chain", 0.6, _consent_reason(app, scopes, tamper[1]), o.signal, t, o.trace_id,
                             o.span_id)], linked,
                    self._app_already_active(app, t, ident.id, scopes))
        if ident.kind == OAUTH_APP:
            app = ident.principal
            self._note_activity(app, (t, o.action, o.signal, o.trace_id, o.span_id))
            link = self.consents.get(app)
            if link is not None and 0 <= t - link[0] <= self.window_ns:
                granted_at, grantor, after_tamper, scopes = link
                if after_tamper:
                    return [self._app_finding(o.action, o.signal, t, o.trace_id, o.span_id, granted_at, grantor,
                                              scopes)], (grantor,), []
                return [], (grantor,), []
        return [], (), []

    def alias(self, other_name: str, app: str) -> None:
        """The app is also known as ``other_name`` (a consent may name it by object id). The link
        is copied, not moved: a forged sign-in pairing a victim's object id with another app
        adds a link for that app and takes none from the victim."""
        if other_name in self.consents and app not in self.consents:
            self._put(self.consents, app, self.consents[other_name])

    def _app_finding(self, action: str, signal: str, t: int, trace_id: bytes, span_id: bytes, granted_at: int,
                     grantor: str, scopes: str) -> Finding:
        reason = (f"{action!r} {(t - granted_at) / 60e9:.0f} minutes after {grantor} granted it consent "
                  f"(scopes {scopes or 'unspecified'}) right after tampering with its mailbox")
        return Finding("chain", 0.9, reason, signal, t, trace_id, span_id)

    def _late_tamper(self, mailbox: str, t: int, to: str, o: Observation) -> tuple[tuple[str, ...], list]:
        """A rule whose record arrived after the consent it precedes: the consent becomes a chain
        step (a finding on the mailbox, at the consent's time) and the app's activity since, if
        any, a finding on the app."""
        app = self.granted.get(mailbox)
        link = self.consents.get(app) if app else None
        if link is None or link[2] or link[1] != mailbox or not 0 <= link[0] - t <= self.window_ns:
            return (), []
        granted_at, _, _, scopes = link
        self._put(self.consents, app, (granted_at, mailbox, True, scopes))
        step = Finding("chain", 0.6, _consent_reason(app, scopes, to), "iam", granted_at, o.trace_id, o.span_id)
        return (f"{OAUTH_APP}:{app}",), [(mailbox, step, (f"{OAUTH_APP}:{app}",)),
                                         *self._app_already_active(app, granted_at, mailbox, scopes)]

    def _note_activity(self, app: str, record: tuple) -> None:
        seen = self.activity.get(app)
        if seen is None:
            self._put(self.activity, app, [record])
            return
        self.activity.move_to_end(app)
        i = len(seen)
        while i and seen[i - 1][0] > record[0]:
            i -= 1
        seen.insert(i, record)
        if len(seen) > MAX_ACTIVITY:
            del seen[0]

    def _app_already_active(self, app: str, granted_at: int, grantor: str, scopes: str) -> list[Elsewhere]:
        """The app's first record after the consent, when it arrived before the chain was known."""
        first = next((r for r in self.activity.get(app, ()) if 0 <= r[0] - granted_at <= self.window_ns), None)
        if first is None:
            return []
        t, action, signal, trace_id, span_id = first
        return [(f"{OAUTH_APP}:{app}", self._app_finding(action, signal, t, trace_id, span_id, granted_at, grantor,
                                                          scopes), (grantor,))]

    def state(self) -> list:
        return [list(self.tampered.items()), list(self.consents.items()), list(self.granted.items()),
                [[k, [[r[0], r[1], r[2], r[3].hex(), r[4].hex()] for r in v]] for k, v in self.activity.items()]]

    def restore(self, s: list) -> None:
        self.tampered = OrderedDict((k, tuple(v)) for k, v in s[0])
        self.consents = OrderedDict((k, tuple(v)) for k, v in s[1])
        self.granted = OrderedDict((k, v) for k, v in s[2]) if len(s) > 2 else OrderedDict()
        self.activity = OrderedDict((k, [(r[0], r[1], r[2], bytes.fromhex(r[3]), bytes.fromhex(r[4]))
                                         for r in v[-MAX_ACTIVITY:]]) for k, v in s[3]) if len(s) > 3 else OrderedDict()


def _consent_reason(app: str, scopes: str, to: str) -> str:
    return (f"granted consent to OAuth app {app} (scopes {scopes or 'unspecified'}) after creating a rule "
            f"forwarding mail to {to}")


def _service(action: str) -> str:
    """The service an action went to (``s3.amazonaws.com/GetObject`` -> ``s3.amazonaws.com``)."""
    return action.partition("/")[0] if "/" in action else action.partition(" ")[0]


class CredentialTracker:
    """One credential, two places at once: baseline-free, so it works from an identity's first minute.

    Keyed by the credential's holder, not by the role, because many instances legitimately share a
    role: the role session (``assumed-role/<role>/<session>``, where the session is an instance id
    or a run id) and the temporary key (``aws.access_key.id``). The same key used
    from another network *and* with another client family within ``window_ns`` of its first use
    is the mark of credentials lifted off the machine they were issued to (GuardDuty's
    InstanceCredentialExfiltration reasons the same way).
    """

    def __init__(self, window_ns: int = 3_600_000_000_000, spread_ns: int = 1_800_000_000_000,
                 spread_networks: int = 3):
        self.window_ns = window_ns
        self.spread_ns = spread_ns
        self.spread_networks = spread_networks
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
        table = self.recent
        seen = table.get(key)
        if seen is None:
            table = self.older
            seen = table.get(key)
        if seen is None:
            if len(self.recent) >= MAX_LINKS // 2:
                self.older, self.recent = self.recent, {}
            self.recent[key] = (o.time_ns, f.network, f.ua, o.source_address or "", o.action)
            return []
        t0, network, ua, address = seen[0], seen[1], seen[2], seen[3]
        if network == f.network or o.time_ns - t0 > self.window_ns:
            return []
        if ua == f.ua:
            return self._spread(key, seen, table, f) if not key.startswith("arn:") else []
        what = f"session {key.rsplit('/', 1)[-1]}" if key.startswith("arn:") else f"temporary key {key[:8]}..."
        reason = (f"{what} first used from {address} by {ua!r} was used "
                  f"{(o.time_ns - t0) / 1e9:.0f} s later from {o.source_address} by {f.ua!r}")
        return [Finding("credential_split", 0.85, reason, o.signal, o.time_ns, o.trace_id, o.span_id)]

    def _spread(self, key: str, seen: tuple, table: dict, f: Features) -> list[Finding]:
        """One temporary key, one client, several networks within ``spread_ns`` of its first use,
        across more than one service: a session token replayed from several places (a stolen
        key fanned out to rented hosts). Keyed by the key, not the role session: a Lambda
        function's concurrent environments share a session name but each has its own key."""
        o = f.obs
        if o.time_ns - seen[0] > self.spread_ns or len(seen) > 7:  # too late, or already said
            return []
        networks = seen[5] if len(seen) > 5 else (seen[1],)
        services = seen[6] if len(seen) > 6 else ((_service(seen[4]),) if len(seen) > 4 else ())
        if f.network not in networks and len(networks) < max(4, self.spread_networks):
            networks += (f.network,)
        service = _service(o.action)
        if service not in services and len(services) < 4:
            services += (service,)
        done = len(networks) >= self.spread_networks and len(services) >= 2
        table[key] = (*seen[:4], seen[4] if len(seen) > 4 else o.action, networks, services,
                      *((True,) if done else ()))
        if not done:
            return []
        reason = (f"temporary key {key[:8]}... was used from {len(networks)} networks ({', '.join(networks)}) "
                  f"within {(o.time_ns - seen[0]) / 60e9:.0f} minutes of its first use, against "
                  f"{', '.join(services)}, by one client")
        return [Finding("first_sight.session_spread", 0.7, reason, o.signal, o.time_ns, o.trace_id, o.span_id)]

    def state(self) -> list:
        return [list(self.older.items()), list(self.recent.items())]

    def restore(self, s: list) -> None:
        if s and s[0] and isinstance(s[0][0], str):  # a snapshot from before the generations
            s = [[], s]
        def entry(v) -> tuple:
            return tuple(tuple(x) if isinstance(x, list) else x for x in v)

        self.older = {k: _link_entry(entry(v)) for k, v in s[0]} if s else {}
        self.recent = {k: _link_entry(entry(v)) for k, v in s[1]} if s else {}


def _link_entry(v: tuple) -> tuple:
    """A credential's first use as ``CredentialLinks`` writes it, or ValueError: (time, network,
    client, address[, action[, networks, services[, said]]])."""
    if not (4 <= len(v) <= 8 and type(v[0]) is int and all(isinstance(x, str) for x in v[1:min(len(v), 5)])
            and all(isinstance(x, tuple) and all(isinstance(y, str) for y in x) for x in v[5:7])
            and (len(v) < 8 or v[7] is True)):
        raise ValueError("a credential's first use is not as the engine writes it")
    return v


MAX_READS = 64


class GrantTracker:
    """Applications granted mail, file or directory access (a consent or an app role with such
    scopes, a new secret or certificate on the app) and what each then read: bulk reads within
    ``bulk_read_s`` of a grant are ``first_sight.granted_bulk_read`` on the app, in whichever
    order grant and reads arrive, with or without a mailbox rule before it (the 2024 Midnight
    Blizzard intrusion: a test app given full_access_as_app and a new secret, then reading
    mailboxes). Reads the app's settled baseline already holds are not counted, so an app whose
    secret is rotated goes on reading as before. An app whose history holds no such read at all
    raises on any read after a grant, whatever its count (a targeted read of one executive's
    mailbox); one whose history does is held to the volume thresholds. Bounded: MAX_LINKS apps,
    MAX_READS reads each."""

    def __init__(self, rules):
        self.grants: OrderedDict[str, tuple[int, str, str]] = OrderedDict()  # app -> (time, what, by whom)
        # app -> [(time, items, target hash, action, signal, trace id, span id)], time-ordered
        self.reads: OrderedDict[str, list] = OrderedDict()
        # apps whose settled history holds mail, file or directory reads: only they are held to
        # the volume thresholds; for any other app, any read after a grant is a first read
        self.readers: OrderedDict[str, bool] = OrderedDict()
        self.reported: OrderedDict[str, int] = OrderedDict()
        self.use_rules(rules)

    def use_rules(self, rules) -> None:
        """New detection content (a reload): grants and reads stay, memos of the old rules go."""
        self.rules = rules
        self.window_ns = int(rules.bulk_read_s * 1e9)
        self._reads_memo: dict[str, bool] = {}  # action -> a read of mail, files or the directory

    def is_grant(self, o: Observation) -> bool:
        return o.action in GRANTS and bool(o.details)

    def grant(self, o: Observation) -> list[Elsewhere]:
        """A grant record: remembered against the app it is about; the app's reads already seen
        since (a late grant) are judged at once."""
        details = o.details
        if o.action == CONSENT:
            app = details.get("oauth.client.id")
        else:
            target = details.get("nhi.target.identity", "")
            app = target[len(OAUTH_APP) + 1:] if target.startswith(OAUTH_APP + ":") else None
        if not app or o.outcome == "failure":
            return []
        if o.action == "credential.created":
            what, kind = "a new secret or certificate", SECRET
        else:
            scopes = details.get("oauth.scopes", "")
            pattern = self.rules.sensitive_scopes
            if not scopes or pattern is None or pattern.search(scopes[:1024]) is None:
                return []
            what = f"{scopes[:200]} ({'consent' if o.action == CONSENT else 'app role'})"
            reads = self.rules.read_scopes
            kind = READ if reads is not None and reads.search(scopes[:1024]) is not None else OTHER
        t = o.time_ns
        earlier = self.grants.get(app)
        if earlier is not None and abs(t - earlier[0]) <= self.window_ns:
            # one grant made of several records (a secret and a consent), named in event order
            if what not in earlier[1]:
                what = f"{earlier[1]} and {what}" if earlier[0] <= t else f"{what} and {earlier[1]}"
            else:
                what = earlier[1]
            t = min(t, earlier[0])
            kind = "".join(sorted(set(kind + (earlier[3] if len(earlier) > 3 else ""))))
        ChainTracker._put(self.grants, app, (t, what[:400], o.identity.id, kind))
        found = self._judge(app)
        return [(f"{OAUTH_APP}:{app}", found, (o.identity.id,))] if found is not None else []

    def read(self, o: Observation, f: Features, routine: bool) -> list[Finding]:
        """An app's record: counted when it reads mail, files or the directory and its baseline
        does not already hold that read (``routine``); a routine read marks the app as a reader."""
        if not f.succeeded or not memo_search(self._reads_memo, self.rules.bulk_reads, o.action):
            return []
        app = o.identity.principal
        if routine:
            if app not in self.readers:
                ChainTracker._put(self.readers, app, True)
            return []
        try:
            items = max(1, min(100_000, int(o.details.get("messaging.batch.message_count", 1))))
        except (TypeError, ValueError):
            items = 1
        reads = self.reads.get(app)
        if reads is None:
            reads = []
            ChainTracker._put(self.reads, app, reads)
        i = len(reads)
        while i and reads[i - 1][0] > o.time_ns:
            i -= 1
        reads.insert(i, (o.time_ns, items, f.target_h or 0, o.action, o.signal, o.trace_id, o.span_id))
        if len(reads) > MAX_READS:
            del reads[0]
        found = self._judge(app) if app in self.grants else None
        return [found] if found is not None else []

    def _judge(self, app: str) -> Finding | None:
        grant = self.grants[app]
        granted_at, what, grantor = grant[0], grant[1], grant[2]
        kinds = grant[3] if len(grant) > 3 else OTHER  # a grant remembered before kinds were
        rules = self.rules
        items, targets, last = 0, set(), None
        for read in self.reads.get(app, ()):
            if 0 <= read[0] - granted_at <= self.window_ns:
                items += read[1]
                targets.add(read[2])
                last = read
        # any read counts for an app whose history holds none, after a new secret or a read grant
        first_read = app not in self.readers and (SECRET in kinds or READ in kinds)
        if last is None or (not first_read and items < rules.bulk_read_items
                            and len(targets) < rules.bulk_read_targets):
            return None
        said = self.reported.get(app)
        if said is not None and said == granted_at:
            return None
        ChainTracker._put(self.reported, app, granted_at)
        reason = (f"read {items} items across {len(targets)} mailboxes, files or directory objects within "
                  f"{(last[0] - granted_at) / 60e9:.0f} minutes of being granted {what} by {grantor}"
                  + ("; its history holds no such read" if first_read else ""))
        # a new secret and a mail or file grant together is the takeover itself
        score = 0.95 if SECRET in kinds and READ in kinds else 0.75
        return Finding("first_sight.granted_bulk_read", score, reason, last[4], last[0], last[5], last[6])

    def alias(self, other_name: str, app: str) -> list[Finding]:
        """The app is also known as ``other_name`` (a service principal's object id, which a
        grant record may name it by); reads already seen under the app's own name are judged."""
        if other_name not in self.grants or app in self.grants:
            return []
        ChainTracker._put(self.grants, app, self.grants[other_name])  # copied, as ChainTracker.alias
        found = self._judge(app)
        return [found] if found is not None else []

    def state(self) -> list:
        return [list(self.grants.items()), list(self.reported.items()),
                [[k, [[r[0], r[1], r[2], r[3], r[4], r[5].hex(), r[6].hex()] for r in v]]
                 for k, v in self.reads.items()], list(self.readers)]

    def restore(self, s: list) -> None:
        self.grants = OrderedDict((k, tuple(v)) for k, v in s[0])
        self.reported = OrderedDict((k, v) for k, v in s[1])
        self.reads = OrderedDict((k, [(r[0], r[1], r[2], r[3], r[4], bytes.fromhex(r[5]), bytes.fromhex(r[6]))
                                      for r in v[:MAX_READS]]) for k, v in s[2])
        self.readers = OrderedDict((str(k), True) for k in (s[3] if len(s) > 3 else ())[-MAX_LINKS:])


GRANTS = frozenset({CONSENT, "role.assigned", "credential.created"})
# What a grant gave an app, one letter each (kept sorted and joined in a grant's record).
SECRET, READ, OTHER = "s", "r", "o"
