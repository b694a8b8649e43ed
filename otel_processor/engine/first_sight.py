"""First-sight signals: facts that are wrong for the *kind* of identity or credential, so they need
no baseline of the identity itself.

Real captures of real attacks are short and start cold: every baseline detector is still in
warm-up when a stolen instance credential lists buckets from a laptop. These signals judge a
record against what any identity of its kind can do:

- ``first_sight.instance_credential``: a credential only a compute instance or pod holds (an EC2
  instance role session, a Kubernetes service account token) used by a desktop client. AWS flags
  the same from first sight (GuardDuty's InstanceCredentialExfiltration).
- ``first_sight.secret_sweep``: many distinct secrets read within minutes by a non-human identity
  whose own history holds no such burst (Elastic: 20 secrets in 6 minutes), and that does not
  write secrets (a rotation job reads every secret because it rewrites them).
- ``first_sight.repository_sweep``: a token cloning or downloading many distinct repositories
  within an hour (the 2022 theft of Heroku's and Travis CI's GitHub OAuth tokens, used to
  download private repositories of dozens of organisations).
- ``first_sight.privilege``: a non-human identity creating principals or credentials, granting a
  privileged role, adding a federated credential, or chaining roles, when it has never done so.
- ``first_sight.fresh_credential_use``: a credential created minutes ago, used from another network
  than the one it was created from, a network the identity using it has never used (a secret
  added to an application by a phished administrator, used at once from the attacker's host).
- ``first_sight.session_spread`` (engine/links.py ``CredentialTracker``): one temporary key used by
  one client from several networks within half an hour, against more than one service.
- ``first_sight.slow_sweep``: a settled identity reading secrets, repositories, mailboxes or files
  it never read, 30 within an hour or 50 within a day, more than its own history of such runs
  holds: a sweep slowed down to stay under the minutes-long windows, from the usual address and
  client.
- ``first_sight.granted_bulk_read`` (engine/links.py ``GrantTracker``): an application granted
  mail, file or directory scopes, or a new secret, that then reads mail or files it never read:
  any read when its history holds none, reads in bulk when it does.

What counts is detection content (``first_sight`` in rules.yaml); the logic is here. Each signal
yields to the identity's settled baseline (it has used this client, read this many secrets, cloned
this many repositories before) and to the catalog (declared expected actions). State per
identity is a few fixed-size fields (``FirstSightState``), part of the identity's profile.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass

import re2

from ..model import HUMAN, Finding
from .detectors import has_value
from .features import MEMO_KEY_MAX, Features

MAX_RECENT = 64  # (time, target hash) kept per sweep window: enough to count past any threshold
HOUR_NS, DAY_NS = 3_600 * 10**9, 86_400 * 10**9
MEMO_CAP = 16_384
REPOSITORY_READ, PRIVILEGE, ASSUME_ROLE, SECRET_WRITE, MAIL_OR_FILE_READ = 1, 2, 4, 8, 16


@dataclass(frozen=True)
class FirstSightRules:
    """The ``first_sight`` section of the rules file (RE2 patterns, thresholds)."""

    desktop_clients: object          # compiled RE2: user agents of desktops and interactive tools
    instance_sessions: object        # compiled RE2: role-session names of instance credentials
    workload_principals: object      # compiled RE2: principals only a workload holds (pods)
    privilege_actions: object        # compiled RE2: creating principals, granting roles, federating
    repository_reads: object         # compiled RE2: clones and downloads of a repository
    secret_writes: object            # compiled RE2: writing or rotating a secret
    sensitive_scopes: object = None  # compiled RE2: mail, file and directory permissions
    bulk_reads: object = None        # compiled RE2: reading mail, files or the directory
    secret_sweep_count: int = 20
    secret_sweep_s: float = 360.0
    repository_sweep_count: int = 10
    repository_sweep_s: float = 3600.0
    fresh_credential_s: float = 3600.0
    bulk_read_items: int = 50
    bulk_read_targets: int = 5
    bulk_read_s: float = 3600.0
    session_spread_s: float = 1800.0
    session_spread_networks: int = 3
    read_scopes: object = None       # compiled RE2: the scopes that read mail, files or the directory
    slow_sweep_hour_count: int = 30
    slow_sweep_day_count: int = 50
    provider_ranges: object = None   # ProviderRanges beside the rules file, when there is one

    @classmethod
    def from_data(cls, data, where: str) -> "FirstSightRules":  # data untyped: a rules file may hold anything
        from ..errors import ConfigError

        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError("first_sight must be a mapping of patterns and thresholds", where)

        def pattern(name: str, default: list[str]):
            patterns = data.get(name, default)
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ConfigError(f"first_sight.{name} must be a list of patterns", where)
            try:
                return re2.compile("(?i)" + "|".join(f"(?:{p})" for p in patterns)) if patterns else None
            except re2.error as exc:
                raise ConfigError(f"first_sight.{name}: bad pattern (RE2 syntax): {exc}", where) from None

        def number(name: str, default: float) -> float:
            value = data.get(name, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"first_sight.{name} must be a positive number", where)
            return value

        for name, default in (("secret_sweep_count", 20), ("repository_sweep_count", 10),
                              ("slow_sweep_hour_count", 30), ("slow_sweep_day_count", 50)):
            if number(name, default) > MAX_RECENT:
                raise ConfigError(f"first_sight.{name} can be at most {MAX_RECENT} (what a sweep window keeps)", where)
        return cls(pattern("desktop_clients", []), pattern("instance_sessions", []),
                   pattern("workload_principals", []), pattern("privilege_actions", []),
                   pattern("repository_reads", []), pattern("secret_writes", []),
                   pattern("sensitive_scopes", []), pattern("bulk_reads", []),
                   int(number("secret_sweep_count", 20)), float(number("secret_sweep_s", 360)),
                   int(number("repository_sweep_count", 10)), float(number("repository_sweep_s", 3600)),
                   float(number("fresh_credential_s", 3600)), int(number("bulk_read_items", 50)),
                   int(number("bulk_read_targets", 5)), float(number("bulk_read_s", 3600)),
                   float(number("session_spread_s", 1800)), int(number("session_spread_networks", 3)),
                   pattern("read_scopes", []), int(number("slow_sweep_hour_count", 30)),
                   int(number("slow_sweep_day_count", 50)), _ranges_beside(where))


def _ranges_beside(rules_path: str):
    from ..errors import ConfigError
    from .provider_ranges import beside

    try:
        return beside(rules_path)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ConfigError(f"provider ranges beside the rules file: {exc}", rules_path) from None


def _foreign_endpoint(details: dict) -> str | None:
    """The VPC endpoint a role session's call came through, when another account owns it
    (GuardDuty's InstanceCredentialExfiltration.InsideAWS, as far as CloudTrail can tell it)."""
    owner = details.get("aws.vpc_endpoint.account.id")
    session = details.get("aws.session")
    if not owner or not session:
        return None
    parts = session.split(":", 5)
    account = parts[4] if len(parts) > 5 else ""
    if not account or owner == account:
        return None
    return (f"VPC endpoint {details.get('aws.vpc_endpoint.id', '(unnamed)')[:64]} of account {owner[:32]}, "
            f"not the role's account {account[:32]}")


class Sweep:
    """Distinct targets of one kind (secrets, repositories) in a sliding event-time window, and
    the identity's own history of such bursts: a window's peak becomes history two windows after
    it was reached, so a burst never counts as its own history but a job that sweeps every night
    sets its own bar. Bounded: MAX_RECENT entries."""

    __slots__ = ("recent", "history", "peak", "peak_ns")

    def __init__(self) -> None:
        self.recent = array("q")  # interleaved (time_ns, target hash), time-ordered
        self.history = 0          # the most distinct targets in any settled earlier window
        self.peak = 0             # the current burst's peak, and when it was reached
        self.peak_ns = 0

    def add(self, t: int, h: int, window_ns: int, need: int) -> int:
        """Counts (t, h); returns the distinct targets in the window ending at ``t``, or, when
        fewer than ``need`` entries are kept at all, their number (fewer than ``need`` either
        way: counting distinct values is skipped on the common path)."""
        if self.peak and t - self.peak_ns >= 2 * window_ns:
            self.history = max(self.history, self.peak)
            self.peak = 0
        recent = self.recent
        i = len(recent)
        while i >= 2 and recent[i - 2] > t:  # a late record goes in its place
            i -= 2
        recent.insert(i, h)
        recent.insert(i, t)
        newest = recent[len(recent) - 2]
        while len(recent) > 2 * MAX_RECENT or (len(recent) > 2 and recent[0] < newest - window_ns):
            del recent[0:2]
        if len(recent) < 2 * need:
            distinct = len(recent) // 2
            if distinct > self.peak:
                self.peak, self.peak_ns = distinct, t
            return distinct
        seen = set()
        for k in range(0, len(recent), 2):
            if t - window_ns <= recent[k] <= t:
                seen.add(recent[k + 1])
        distinct = len(seen)
        if distinct > self.peak:
            self.peak, self.peak_ns = distinct, t
        return distinct

    def state(self) -> list:
        return [self.recent.tolist(), self.history, self.peak, self.peak_ns]

    @classmethod
    def from_state(cls, s: list) -> "Sweep":
        d = cls()
        d.recent = array("q", [int(x) for x in s[0][: 2 * MAX_RECENT]])
        d.history, d.peak, d.peak_ns = int(s[1]), int(s[2]), int(s[3])
        return d


class FirstSightState:
    """Per identity: its secret and repository sweeps, whether it writes secrets (a rotation job
    reads every secret because it rewrites them), and when each signal last spoke."""

    __slots__ = ("secrets", "repos", "reported", "writes_secrets", "new_hour", "new_day")

    def __init__(self) -> None:
        self.secrets = Sweep()
        self.repos = Sweep()
        self.reported: dict[str, int] = {}  # signal -> event time it was last raised
        self.writes_secrets = False
        # secrets and repositories it never read before, per hour and per day: a sweep slow enough
        # to stay under the minutes-long windows still adds up here
        self.new_hour = Sweep()
        self.new_day = Sweep()

    def used(self) -> bool:
        """Whether it holds anything (an identity without such state keeps none)."""
        return bool(self.secrets.recent or self.repos.recent or self.reported or self.writes_secrets
                    or self.new_hour.recent or self.new_day.recent)

    def state(self) -> list:
        return [self.secrets.state(), self.repos.state(), sorted(self.reported.items()), self.writes_secrets,
                self.new_hour.state(), self.new_day.state()]

    @classmethod
    def from_state(cls, s: list) -> "FirstSightState":
        d = cls()
        d.secrets, d.repos = Sweep.from_state(s[0]), Sweep.from_state(s[1])
        d.reported = {str(k): int(v) for k, v in s[2][:8]}
        d.writes_secrets = bool(s[3]) if len(s) > 3 else False
        if len(s) > 5:
            d.new_hour, d.new_day = Sweep.from_state(s[4]), Sweep.from_state(s[5])
        return d


def _finding(facet: str, score: float, reason: str, f: Features) -> Finding:
    o = f.obs
    return Finding(facet, score, reason, o.signal, o.time_ns, o.trace_id, o.span_id)


class FirstSight:
    """Scores one observation against the kind of its identity and credential."""

    def __init__(self, rules: FirstSightRules):
        self._unissued: dict[str, tuple] = {}  # credential -> its first strange use before its issuance
        self.use_rules(rules)

    def use_rules(self, rules: FirstSightRules) -> None:
        """New detection content (a reload): what was learnt stays, memos of the old rules go."""
        self.rules = rules
        self._secret_ns = int(rules.secret_sweep_s * 1e9)
        self._repo_ns = int(rules.repository_sweep_s * 1e9)
        self._fresh_ns = int(rules.fresh_credential_s * 1e9)
        self._desktops: dict[str, bool] = {}  # user agent -> desktop client (bounded memo)
        self._actions: dict[str, int] = {}    # action -> kind bits (bounded memo)

    def update(self, holder, f: Features, known: list, warmed: bool,
               credential: Callable[[str], object]) -> list[Finding] | None:
        """``score_one`` then ``learn_one``. ``holder``: what keeps the identity's
        ``first_sight`` state (its profile; the state is made when first needed, so the many
        identities that never sweep or raise keep none). ``known``: the identity's value arrays
        as they stood before this record (``NewValueDetector.values``: actions, targets,
        networks, client families, countries); ``credential``: what the credential book knows
        of a credential id (``CredentialFacts`` or None)."""
        o = f.obs
        ident = o.identity
        if ident.kind == HUMAN:
            return None
        out = None
        rules = self.rules
        desktop = (o.user_agent and self._desktop(o.user_agent)
                   and not (warmed and f.ua_h is not None and has_value(known[3], f.ua_h)))
        ranges = rules.provider_ranges
        off_cloud = (not desktop and ranges is not None and o.source_address
                     and not (warmed and f.network_h is not None and has_value(known[2], f.network_h))
                     and ranges.outside(o.source_address))  # the look-up last: the others are cheaper
        foreign = _foreign_endpoint(o.details) if o.details else None
        if desktop or off_cloud or foreign:
            held = self._instance_credential(o, credential)
            if held and foreign:
                out = self._say(out, _state(holder), "first_sight.instance_credential", 0.8, f,
                                f"{held} was used through {foreign}: such a credential never leaves its "
                                f"own account's network", once_per_ns=self._secret_ns)
            elif held and desktop:
                out = self._say(out, _state(holder), "first_sight.instance_credential", 0.75, f,
                                f"{held} was used by a desktop client ({o.user_agent[:120]!r}) from "
                                f"{o.source_address or 'an unknown address'}: such a credential never "
                                f"leaves its instance or pod", once_per_ns=self._secret_ns)
            elif held:
                out = self._say(out, _state(holder), "first_sight.instance_credential", 0.7, f,
                                f"{held} was used from {o.source_address}, outside every cloud provider's "
                                f"published ranges, by {(o.user_agent or 'an unknown client')[:120]!r}: such a "
                                f"credential never leaves its instance or pod", once_per_ns=self._secret_ns)
        used = o.details.get("nhi.credential.id") if o.details else None
        if used and f.network and f.network_h is not None and not has_value(known[2], f.network_h):
            facts = credential(used)
            if facts is None or not facts.issued_ns:
                self._note_unissued(used, f)  # judged when its issuance record arrives
            elif self._fresh_elsewhere(facts.issued_ns, facts.issued_by, facts.issued_from, o.time_ns, f.network):
                out = self._say(out, _state(holder), "first_sight.fresh_credential_use", 0.7, f,
                                _fresh_reason(used, facts.issued_by, facts.issued_from, facts.issued_ns,
                                              o.time_ns, o.source_address), once_per_ns=self._fresh_ns)
        kind = self._action_kind(o.action)
        if kind & SECRET_WRITE and f.succeeded:
            _state(holder).writes_secrets = True
        if f.action_class == "secret_read" and f.target_h is not None and not _state(holder).writes_secrets:
            state = holder.first_sight
            sweep = state.secrets
            distinct = sweep.add(o.time_ns, f.target_h, self._secret_ns, rules.secret_sweep_count)
            if distinct >= rules.secret_sweep_count and sweep.history < rules.secret_sweep_count:
                out = self._say(out, state, "first_sight.secret_sweep", 0.7, f,
                                f"read {distinct} distinct secrets within {rules.secret_sweep_s / 60:.0f} "
                                f"minutes; its history holds no such burst (at most {sweep.history})",
                                once_per_ns=self._secret_ns)
        if kind & REPOSITORY_READ and f.target_h is not None and not _expected(ident, o.action):
            state = _state(holder)
            sweep = state.repos
            distinct = sweep.add(o.time_ns, f.target_h, self._repo_ns, rules.repository_sweep_count)
            if distinct >= rules.repository_sweep_count and sweep.history < rules.repository_sweep_count:
                out = self._say(out, state, "first_sight.repository_sweep", 0.7, f,
                                f"cloned or downloaded {distinct} distinct repositories within "
                                f"{rules.repository_sweep_s / 60:.0f} minutes; its history holds no such "
                                f"burst (at most {sweep.history})", once_per_ns=self._repo_ns)
        if (warmed and f.target_h is not None and not has_value(known[1], f.target_h)
                and ((f.action_class == "secret_read" and not _state(holder).writes_secrets)
                     or (kind & (REPOSITORY_READ | MAIL_OR_FILE_READ) and not _expected(ident, o.action)))):
            out = self._slow_sweep(out, _state(holder), f)
        if (f.succeeded and (kind & PRIVILEGE or self._chains_roles(o, kind))
                and not has_value(known[0], f.action_h) and not _expected(ident, o.action)):
            # Settled history that never held it says more than a capture that starts cold.
            score = 0.6 if warmed else 0.45
            out = self._say(out, _state(holder), "first_sight.privilege", score, f,
                            f"{ident.kind.replace('_', ' ')} did {o.action!r} for the first time"
                            f"{'' if warmed else ' (no settled history yet)'}: creating principals, "
                            f"granting roles or chaining roles is not what a workload does",
                            once_per_ns=self._secret_ns)
        return out

    def _slow_sweep(self, out, state: FirstSightState, f: Features):
        """A secret, repository, mailbox or file this settled identity never read: counted per hour
        and per day against its own history of such runs, so the pace of a sweep does not hide it."""
        rules = self.rules
        for sweep, window_ns, need, span in ((state.new_hour, HOUR_NS, rules.slow_sweep_hour_count, "an hour"),
                                             (state.new_day, DAY_NS, rules.slow_sweep_day_count, "a day")):
            distinct = sweep.add(f.obs.time_ns, f.target_h, window_ns, need)
            if distinct >= need and sweep.history < need:
                return self._say(out, state, "first_sight.slow_sweep", 0.65, f,
                                 f"read {distinct} secrets, repositories, mailboxes or files it had never read "
                                 f"within {span}; its "
                                 f"history holds no such run of new targets (at most {sweep.history})",
                                 once_per_ns=window_ns)
        return out

    def _fresh_elsewhere(self, issued_ns: int, issued_by: str, issued_from: str, t: int, network: str) -> bool:
        """Created by an identity (not a cloud service handing a workload its session) within
        ``fresh_credential_s`` before ``t``, from a known network other than ``network``."""
        return (bool(issued_ns) and 0 <= t - issued_ns <= self._fresh_ns and bool(issued_from)
                and issued_from != network and not issued_by.endswith(".amazonaws.com"))

    def _note_unissued(self, credential_id: str, f: Features) -> None:
        """A credential used from a network new to its user before its issuance is known (the
        issuance record late, or never seen): the first such use, kept a while (bounded)."""
        unissued = self._unissued
        if credential_id in unissued or len(credential_id) > MEMO_KEY_MAX:
            return
        o = f.obs
        unissued[credential_id] = (o.time_ns, o.identity.id, f.network, o.source_address or "", o.signal,
                                   o.trace_id, o.span_id)
        if len(unissued) > MEMO_CAP:
            del unissued[next(iter(unissued))]

    def issued_late(self, credential_id: str, issued_ns: int, issued_by: str, issued_from: str | None) -> list:
        """An issuance record arriving after a use it precedes: that use judged now, as
        ``(identity id, finding, related)`` for the engine to add to the user's case."""
        use = self._unissued.pop(credential_id, None)
        if use is None or not self._fresh_elsewhere(issued_ns, issued_by, issued_from or "", use[0], use[2]):
            return []
        t, user, _, address, signal, trace_id, span_id = use
        reason = _fresh_reason(credential_id, issued_by, issued_from or "", issued_ns, t, address)
        return [(user, Finding("first_sight.fresh_credential_use", 0.7, reason, signal, t, trace_id, span_id), ())]

    def _instance_credential(self, o, credential: Callable[[str], object]) -> str | None:
        """What the credential in use belongs to, when only an instance or pod holds it."""
        session = o.details.get("aws.session") if o.details else None
        if session:
            name = session.rsplit("/", 1)[-1]
            if self.rules.instance_sessions is not None and self.rules.instance_sessions.search(name[:128]):
                return f"the instance credential of {session}"
            used = o.details.get("nhi.credential.id")
            facts = credential(used) if used else None
            issued_by = facts.issued_by if facts is not None else None
            if issued_by and issued_by.startswith("ec2."):
                return f"the instance credential of {session} (issued by {issued_by})"
        principal = o.identity.principal
        if self.rules.workload_principals is not None and self.rules.workload_principals.search(principal[:512]):
            return f"the workload token of {principal}"
        return None

    @staticmethod
    def _chains_roles(o, kind: int) -> bool:
        """A role session assuming another role (role chaining); not an AWS service handing a
        session its credentials (EC2's AssumeRole for an instance is attributed to the session)."""
        details = o.details
        return (bool(kind & ASSUME_ROLE) and bool(details) and "aws.session" in details
                and not details.get("nhi.credential.issued_by", "").endswith(".amazonaws.com"))

    def _desktop(self, user_agent: str) -> bool:
        return memo_search(self._desktops, self.rules.desktop_clients, user_agent)

    def _action_kind(self, action: str) -> int:
        """REPOSITORY_READ, PRIVILEGE, ASSUME_ROLE, SECRET_WRITE and MAIL_OR_FILE_READ bits of an
        action (memoised: actions recur)."""
        found = self._actions.get(action)
        if found is None:
            rules, text = self.rules, action[:512]
            found = ((REPOSITORY_READ if _matches(rules.repository_reads, text) else 0)
                     | (PRIVILEGE if _matches(rules.privilege_actions, text) else 0)
                     | (ASSUME_ROLE if text.rsplit("/", 1)[-1] == "AssumeRole" else 0)
                     | (SECRET_WRITE if _matches(rules.secret_writes, text) else 0)
                     | (MAIL_OR_FILE_READ if _matches(rules.bulk_reads, text) else 0))
            if len(action) <= MEMO_KEY_MAX:
                if len(self._actions) >= MEMO_CAP:
                    self._actions.clear()
                self._actions[action] = found
        return found

    @staticmethod
    def _say(out, state: FirstSightState, facet: str, score: float, f: Features, reason: str,
             once_per_ns: int) -> list[Finding] | None:
        """The finding, unless this signal spoke for this identity within ``once_per_ns``."""
        t = f.obs.time_ns
        last = state.reported.get(facet)
        if last is not None and abs(t - last) < once_per_ns:
            return out
        state.reported[facet] = t
        found = _finding(facet, score, reason, f)
        if out is None:
            return [found]
        out.append(found)
        return out


def _fresh_reason(credential_id: str, issued_by: str, issued_from: str, issued_ns: int, t: int, address) -> str:
    return (f"credential {credential_id[:12]}... created by {issued_by[:80]} from {issued_from} "
            f"{(t - issued_ns) / 60e9:.0f} minutes earlier was used from {address}, a network neither its "
            f"creator nor this identity used")


def memo_search(memo: dict, pattern, text: str) -> bool:
    """Whether ``pattern`` (compiled RE2, or None) matches ``text``, memoised in ``memo``: user
    agents and actions recur. Bounded: only short texts are kept, and a full memo starts over."""
    found = memo.get(text)
    if found is None:
        found = pattern is not None and pattern.search(text[:512]) is not None
        if len(text) <= MEMO_KEY_MAX:
            if len(memo) >= MEMO_CAP:
                memo.clear()
            memo[text] = found
    return found


def _matches(pattern, text: str) -> bool:
    return pattern is not None and pattern.search(text) is not None


def _state(holder) -> FirstSightState:
    state = holder.first_sight
    if state is None:
        state = holder.first_sight = FirstSightState()
    return state


def _expected(ident, action: str) -> bool:
    """The catalog declares this action normal for the identity."""
    return any(a == action or (a.endswith("*") and action.startswith(a[:-1])) for a in ident.expected_actions)
