"""Features derived from one observation, computed once and shared by every detector.

Values are remembered as 32-bit CRC hashes: stable across processes (snapshots restore into a new
interpreter, where ``hash()`` would differ) and four bytes each in the per-identity arrays.
"""

from __future__ import annotations

import ipaddress
import os
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import re2
import yaml

from ..model import Observation

RULES_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "rules", "rules.yaml")
SENSITIVE_CLASSES = ("privilege_change", "secret_read", "export", "discovery", "execution")
CLASSES = ("other", "signin") + SENSITIVE_CLASSES


_HASHES: dict[str, int] = {}


# Memo tables keep only keys up to this long, so that their memory stays small whatever the input.
MEMO_KEY_MAX = 200


def stable_hash(text: str) -> int:
    """CRC-32 of the text, memoised: the same few thousand values recur on every record."""
    if len(text) > MEMO_KEY_MAX:
        return zlib.crc32(text.encode("utf-8", "surrogatepass"))
    h = _HASHES.get(text)
    if h is None:
        h = zlib.crc32(text.encode("utf-8", "surrogatepass"))
        if len(_HASHES) >= 262_144:
            _HASHES.clear()
        _HASHES[text] = h
    return h


def network_of(address: str) -> tuple[str, bool] | None:
    """IPv4 /24 or IPv6 /48 of an address, and whether it is private (RFC 1918, ULA, loopback)."""
    return _network_of(address) if len(address) <= 64 else None  # no address is longer


@lru_cache(maxsize=65_536)
def _network_of(address: str) -> tuple[str, bool] | None:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    return str(net), any(ip in r for r in _INTERNAL if r.version == ip.version)


# Address space an organisation's own workloads use. Deliberately not ``ip.is_private``, which
# also counts documentation and benchmarking ranges that are, to a responder, "the internet".
_INTERNAL = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "fc00::/7", "fe80::/10", "::1/128"))


_UA_TOKEN = re.compile(r"^([A-Za-z][\w.\-]*)")


@lru_cache(maxsize=16_384)
def ua_family(user_agent: str) -> str:
    """``aws-sdk-go-v2/1.2.3 os/linux`` -> ``aws-sdk-go-v2``; browsers -> ``browser``.

    Versions are dropped on purpose: an SDK upgrade is not a new client.
    """
    ua = user_agent.strip()
    if ua[:1] == "[":  # CloudTrail brackets some agents: [aws-cli/1.18.136 ...] is aws-cli
        ua = ua.strip("[] ")
    if ua.startswith("Mozilla/"):
        return "browser"
    m = _UA_TOKEN.match(ua)
    if not m:
        return ua[:32]
    # The product name before the first "/" (its version follows the slash). Names like
    # aws-sdk-go-v2 keep their suffix: a different major SDK is a different client.
    return m.group(1).lower()


@dataclass
class Rule:
    name: str
    category: str
    references: tuple[str, ...]
    description: str
    facets: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    def matches(self, facets: set[str], classes: set[str], kind: str) -> bool:
        conditions = [(self.facets, facets), (self.classes, classes), (self.kinds, {kind})]
        return all(not want or any(w in have for w in want) for want, have in conditions)


@dataclass
class RuleBook:
    """Detection content loaded from YAML: action classes and incident-to-rule mappings."""

    class_patterns: list[tuple[str, re.Pattern]] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    first_sight: dict = field(default_factory=dict)  # the ``first_sight`` section (engine/first_sight.py)
    responses: dict = field(default_factory=dict)    # the ``responses`` section: what to do first
    path: str = ""

    @classmethod
    def load(cls, path: str | None = None) -> "RuleBook":
        from ..errors import ConfigError

        path = path or RULES_FILE
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read rules: {exc}", path) from None
        if not isinstance(data, dict):
            raise ConfigError("a rules file is a mapping (action_classes, first_sight, rules)", path)
        responses = data.get("responses") or {}
        if not isinstance(responses, dict) or not all(isinstance(v, str) for v in responses.values()):
            raise ConfigError("responses: a mapping of credential form or identity kind to text", path)
        book = cls(first_sight=data.get("first_sight") or {}, responses={k: " ".join(v.split())
                                                                        for k, v in responses.items()}, path=path)
        for name, patterns in (data.get("action_classes") or {}).items():
            if name not in CLASSES:
                raise ConfigError(f"unknown action class {name!r} (known: {', '.join(CLASSES)})", path)
            try:  # RE2: matching time linear in the action, whatever a rules file holds
                book.class_patterns.append((name, re2.compile("(?i)" + "|".join(f"(?:{p})" for p in patterns))))
            except re2.error as exc:
                raise ConfigError(f"action class {name}: bad pattern (RE2 syntax): {exc}", path) from None
        for item in data.get("rules") or []:
            when = item.get("when") or {}
            book.rules.append(Rule(
                name=item["name"], category=item["category"], references=tuple(item["references"]),
                description=" ".join(str(item["description"]).split()),
                facets=tuple(when.get("facets", ())), classes=tuple(when.get("classes", ())),
                kinds=tuple(when.get("kinds", ())),
            ))
        if not book.rules or book.rules[-1].facets or book.rules[-1].classes or book.rules[-1].kinds:
            raise ConfigError("the last rule must have no `when` (it is the fallback)", path)
        return book

    def rule_for(self, facets: set[str], classes: set[str], kind: str) -> Rule:
        for rule in self.rules:
            if rule.matches(facets, classes, kind):
                return rule
        return self.rules[-1]

    def classify(self, action: str) -> str:
        return _classify(self, action)

    def response_for(self, kind: str, credential: str | None) -> str:
        """The first step against this identity: by what its credential is where the id says
        (AWS: ASIA... a role session, AKIA... a long-lived key), else by its kind."""
        form = None
        if credential:
            if credential.startswith("ASIA"):
                form = "aws_session"
            elif credential.startswith("AKIA"):
                form = "aws_access_key"
        r = self.responses
        return r.get(form) or r.get(kind) or r.get("default", "")


_CLASS_CACHE: dict[tuple[int, str], str] = {}


# Classification reads this much of an action: a class shows in its first words.
CLASSIFY_PREFIX = 512


def _classify(book: RuleBook, action: str) -> str:
    action = action[:CLASSIFY_PREFIX]
    if len(action) > MEMO_KEY_MAX:
        return _class_of(book, action)
    key = (id(book), action)
    hit = _CLASS_CACHE.get(key)
    if hit is not None:
        return hit
    result = _class_of(book, action)
    if len(_CLASS_CACHE) > 65_536:
        _CLASS_CACHE.clear()
    _CLASS_CACHE[key] = result
    return result


def _class_of(book: RuleBook, action: str) -> str:
    for name, pattern in book.class_patterns:
        if pattern.search(action):
            return name
    return "other"


class Features:
    """What the detectors read from one observation, each computed once.

    A plain class rather than a dataclass so that ``features.pxd`` can give it C-typed fields
    when the engine is compiled (``setup.py``); it reads the same either way.
    """

    __slots__ = ("obs", "action_class", "action_h", "target_h", "network", "network_private", "network_h",
                 "ua", "ua_h", "country_h", "window", "hour", "weekday", "succeeded", "class_index")

    def __init__(self, obs: Observation, action_class: str, action_h: int, target_h: int | None,
                 network: str | None, network_private: bool, network_h: int | None, ua: str | None,
                 ua_h: int | None, country_h: int | None, window: int, hour: int, weekday: int,
                 succeeded: bool, class_index: int = 0):
        self.obs = obs
        self.action_class = action_class
        self.action_h = action_h
        self.target_h = target_h
        self.network = network
        self.network_private = network_private
        self.network_h = network_h
        self.ua = ua
        self.ua_h = ua_h
        self.country_h = country_h
        self.window = window
        self.hour = hour
        self.weekday = weekday
        self.succeeded = succeeded
        self.class_index = class_index  # CLASSES.index(action_class)

    def __repr__(self) -> str:
        return f"Features({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)})"


# Memo tables for the few thousand values that recur on every record: one look-up each instead
# of a chain of calls. Bounded; everything in them is recomputable.
_MEMO_CAP = 65_536
_ACTIONS: dict[tuple[int, str], tuple[str, int, int]] = {}   # (book, action) -> class, index, hash


def _action_facts(book: RuleBook, action: str) -> tuple[str, int, int]:
    if len(action) > MEMO_KEY_MAX:
        cls = book.classify(action)
        return cls, CLASSES.index(cls), stable_hash(action)
    key = (id(book), action)  # a RuleBook is not hashable; the engine holds one for its lifetime
    hit = _ACTIONS.get(key)
    if hit is None:
        cls = book.classify(action)
        hit = (cls, CLASSES.index(cls), stable_hash(action))
        if len(_ACTIONS) >= _MEMO_CAP:
            _ACTIONS.clear()
        _ACTIONS[key] = hit
    return hit


@lru_cache(maxsize=_MEMO_CAP)
def _address_facts(address: str) -> tuple[str, bool, int] | None:
    """Network, whether private, and the network's hash."""
    net = network_of(address)
    return (net[0], net[1], stable_hash(net[0])) if net else None


@lru_cache(maxsize=_MEMO_CAP)
def _agent_facts(user_agent: str) -> tuple[str, int]:
    """Client family and its hash."""
    family = ua_family(user_agent)
    return family, stable_hash(family)


def features_of(obs: Observation, book: RuleBook, window_s: float) -> Features:
    action_class, class_index, action_h = _action_facts(book, obs.action)
    details = obs.details
    if details and "process.command_line" in details:
        # A process start is classified by what it ran, not by "process.start".
        action_class, class_index, _ = _action_facts(book, details["process.command_line"])
    net = _address_facts(obs.source_address) if obs.source_address else None
    ua = _agent_facts(obs.user_agent[:MEMO_KEY_MAX]) if obs.user_agent else None
    target = obs.target
    seconds = obs.time_ns // 1_000_000_000
    hours = seconds // 3600
    return Features(
        obs,
        action_class,
        action_h,
        stable_hash(target) if target else None,
        net[0] if net else None,
        net[1] if net else False,
        net[2] if net else None,
        ua[0] if ua else None,
        ua[1] if ua else None,
        stable_hash(obs.country) if obs.country else None,
        int(seconds // window_s),
        hours % 24,
        (hours // 24 + 3) % 7,  # 1970-01-01 was a Thursday; 0 = Monday
        obs.outcome != "failure",
        class_index,
    )
