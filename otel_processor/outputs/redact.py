"""Credential masking before anything leaves: every key and every string of a request, at any depth.

What is masked (docs/operations.md's "What is masked" table is this module in words):

1. **Credential-bearing keys**, case-insensitive, at any depth (record, resource, scope, span event,
   span link and metric data-point attributes, exemplars, nested maps and arrays): the key's last
   dot-separated segment names a credential (``authorization``, ``proxy-authorization``, ``cookie``,
   ``set-cookie``, ``x-api-key``, ``x-auth-token``, ``x-amz-security-token``, ``api_key``,
   ``access_token``, ``client_secret``, ``aws.secret_access_key``, ``github.token``...) or holds
   ``password``, ``passwd``, ``pwd``, ``passphrase`` or ``secret`` as a word, unless its last word
   says it names rather than holds one (``secretId``, ``token_id``, ``password_length``). Whatever
   the value (string, bytes, number, list, map) it is replaced whole. Site-specific names come
   from ``masking.extra_keys``.
2. **Secrets inside any string** (attribute values, log bodies, span names, status messages,
   event names...): JSON Web Tokens; GitHub, GitLab, Slack, Stripe, Google, npm, OpenAI,
   Anthropic and SendGrid token formats; PEM private keys; ``Bearer``/``Basic``/``token``
   credentials; ``name=value`` and ``"name": "value"`` where the name is a credential word
   (``password``, ``secret``, ``token``, ``api_key``, ``access_key``, ``authorization``...), which
   covers ``url.full``/``url.query`` parameters such as ``api_key=`` and ``X-Amz-Signature=``,
   connection strings and command lines; and the password in ``scheme://user:password@host``.

High-entropy credentials (tokens, keys, cookies) become ``sha256:<16 hex>`` so that a responder can
tell the same credential apart from another; values that may be guessable (passwords, secrets)
become ``[masked]``. The credential attributes that name an API-key identity keep their
fingerprint, which is that identity.

Cost: a record is only walked when something in it can be a secret. The native core decides
that in Rust (``native/src/triggers.rs``, with the same key classifier and the same triggers as here);
without it, one linear regular expression over the serialized request decides whether to walk.
The patterns that find secrets run on Google's RE2 here and on the ``regex`` crate in the native
core (``native/src/mask.rs``, compiled from the same rules: ``native_rules``), both linear in
time, and only on strings a trigger picked, so no input costs more than a pass over its bytes.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import dataclass, field

import re2
import yaml
from google.protobuf.descriptor import FieldDescriptor

from .._compiled import native_module
from ..identity.credentials import CREDENTIAL_ATTRIBUTES, MASK_PREFIX, masked
from .enrich import OUR_ATTRIBUTES

log = logging.getLogger(__name__)

OPAQUE = "[masked]"
SAFE, FINGERPRINT, HIDE = 0, 1, 2

SECRETS_TABLE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "rules", "secrets.yaml")


def _load_table(path: str = SECRETS_TABLE) -> dict:
    """rules/secrets.yaml: what a secret looks like, for the triggers (both builds) and the rules."""
    with open(path, encoding="utf-8") as fh:
        table = yaml.safe_load(fh)
    for fmt in table["token_formats"]:
        prefixes = fmt["prefix"]
        fmt["prefix"] = [prefixes] if isinstance(prefixes, str) else list(prefixes)
        if fmt["mask"] not in ("fingerprint", "hide"):
            raise ValueError(f"{path}: {fmt['name']}: mask must be fingerprint or hide")
    return table


TABLE = _load_table()
# Last key segments (lower case, "-" as "_") that hold a credential.
TOKEN_NAMES = frozenset(TABLE["key_names"])
WHOLE_KEYS = frozenset(TABLE["whole_keys"])
SECRET_WORDS = frozenset(TABLE["secret_words"])
# A last word that says the key names or measures a secret rather than holding it.
NAMING_WORDS = frozenset(TABLE["naming_words"])
_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


def classify_key(key: str, extra: tuple[str, ...] = ()) -> int:
    """SAFE, FINGERPRINT (a high-entropy credential) or HIDE (a maybe guessable secret)."""
    if key in _CREDENTIAL_KEYS:
        return FINGERPRINT
    lower = key.lower()
    if lower in WHOLE_KEYS:
        return FINGERPRINT
    for pattern in extra:
        if fnmatch.fnmatchcase(lower, pattern):
            return FINGERPRINT
    last = lower.rsplit(".", 1)[-1].replace("-", "_")
    if last in TOKEN_NAMES:
        return FINGERPRINT
    words = _WORD.findall(_CAMEL.sub(r"\1_\2", key.rsplit(".", 1)[-1]).lower())
    if not words or words[-1] in NAMING_WORDS:
        return SAFE
    if any(w in SECRET_WORDS for w in words):
        return HIDE
    if "private" in words and "key" in words:  # GCP's privateKeyData, private_key_pem...
        return HIDE
    if words[-1] in ("token", "key", "secret") and words[0] == "x" and len(words) > 2:
        return FINGERPRINT  # an API-key header: x-<service>-key, x-<service>-token
    if words[-1] in ("token", "key") and len(words) > 1 and words[-2] in (
            "api", "access", "secret", "private", "auth", "session", "refresh", "bearer", "signing", "client",
            "security", "id", "master", "encryption"):
        return FINGERPRINT
    return SAFE


_CREDENTIAL_KEYS = frozenset(CREDENTIAL_ATTRIBUTES)
# Inside a map held under a credential key, what names the credential rather than holding it:
# CloudTrail's ``responseElements.credentials.accessKeyId`` and ``expiration``. The access key id
# is how the credential is followed from its issuance to its use; the secret beside it is masked.
_NAMING_INSIDE = frozenset({"id", "arn", "expiration", "expiry", "expires", "type"})


def _names_the_credential(key: str) -> bool:
    words = _WORD.findall(_CAMEL.sub(r"\1_\2", key).lower())
    return bool(words) and words[-1] in _NAMING_INSIDE and not any(w in SECRET_WORDS for w in words)

# -- secrets inside strings ---------------------------------------------------------------------
# Triggers: a string can only hold a secret the rules below find if it matches this (linear,
# Python ``re``); the compiled scanner implements the same triggers in C, and tests check that
# the rules never change a string the triggers let through.
TOKEN_PREFIXES = tuple(p for fmt in TABLE["token_formats"] for p in fmt["prefix"])
_WORD_PREFIXES = tuple(p for p in TOKEN_PREFIXES if p[0].isalnum() or p[0] == "_")
_OTHER_PREFIXES = tuple(p for p in TOKEN_PREFIXES if p not in _WORD_PREFIXES)
ASSIGN_SUFFIXES = tuple(TABLE["assignment_words"]) + tuple(TABLE["whole_word_assignments"])
# ``code`` is an OAuth authorization or device code (``?code=``, ``"code": "0.AXoA..."``) only as a
# whole word whose value looks like one; ``errorCode``, ``statusCode`` and ``"code": 403`` in audit
# records are not secrets, and masking them breaks the records vendors send as JSON text.
_ASSIGN_WHOLE_WORD = tuple(TABLE["whole_word_assignments"])
SPACE_WORDS = tuple(TABLE["schemes"])
# Command-line flags whose next word is a secret (``--password hunter2``).
FLAG_WORDS = tuple(TABLE["flags"])
# SQL that sets a password: ALTER USER x PASSWORD '...', IDENTIFIED BY '...'.
SQL_WORDS = tuple(TABLE["sql"])
# Between a name (and its quotes) and its '=' or ':', and after it: spaces or tabs, a few.
_GAP = "[ \t]{0,8}"
# '=' or ':', or either URL-encoded (a query string inside a logged URL or form body).
_SIGN = r"(?:[=:]|%3[DdAa]|\\u003[dDaA])"
# A quote around a name or a value: ' or ", backslash-escaped (JSON inside a JSON string) or as
# a \u escape.
_QUOTE = r"""(?:\\?["']|\\u00(?:22|27))"""
# A value: up to a quote, white space or punctuation; a backslash only when it escapes no quote
# (so that `{\"password\":\"x\"}` keeps its escaped closing quote). A \u escape is part of the
# value unless it is a quote (\u0022, \u0027): JSON written ASCII-only (Python's json.dumps, many
# loggers) escapes every other letter of `p\u00e4ssw\u00f6rd`, which must be masked whole. The
# group opens here.
_UNICODE_ESCAPE = (r"\\u(?:[1-9a-fA-F][0-9a-fA-F]{3}|0[1-9a-fA-F][0-9a-fA-F]{2}|00[013-9a-fA-F][0-9a-fA-F]"
                   r"|002[013-689a-fA-F])")
_VALUE = r"""((?:[^\s"'&,;}{\]\[\\]|\\[^"'\su]|""" + _UNICODE_ESCAPE + ")"
# Forms the native triggers check in code (``triggers.rs``: ``aws_pair``), each with its trigger here, named by
# the table's ``form``.
_FORMS = {"aws_key_pair": r"\b(?:AKIA|ASIA)[A-Z0-9]{16}[ \t,;:|=\"']{1,8}[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+]|$)"}
TRIGGER = re.compile(
    r"\b(?:" + "|".join(re.escape(p) for p in _WORD_PREFIXES) + r")"
    + "".join(f"|{re.escape(p)}" for p in _OTHER_PREFIXES)
    + r"|://[^/\s@]{1,600}@"
    r"|(?i:" + "|".join(s for s in ASSIGN_SUFFIXES if s not in _ASSIGN_WHOLE_WORD) + ")" + _QUOTE + "{0,2}" + _GAP + _SIGN
    # ``code`` with eight characters of a value that may be a code after it: not ``"code": 200``,
    # which is in every Kubernetes audit record. The class is the rule's value class spelled out
    # (RE2's \s, which has no \v, so never stricter than the rule).
    + r"|(?i:" + "|".join(_ASSIGN_WHOLE_WORD) + ")" + _QUOTE + "{0,2}" + _GAP + _SIGN + r" {0,2}[\"']?[^\t\n\f\r \"'&,;}{\]\[]{8}"
    + "".join(f"|{_FORMS[fmt['form']]}" for fmt in TABLE["token_formats"] if fmt.get("form"))
    + r"|(?i:" + "|".join(re.escape(w) for w in SPACE_WORDS + FLAG_WORDS + SQL_WORDS) + r")[ \t]",
    re.ASCII,
)
_HOW = {"fingerprint": FINGERPRINT, "hide": HIDE}
# An Authorization value in a scheme other than the common ones (SSWS, Digest, AWS4-HMAC-SHA256,
# Splunk, GenieKey...): the whole value is the credential, not the scheme word in front of it.
_AUTHORIZATION_VALUE = (r"(?i)\b(?:proxy[-_])?authorization[\"']{0,2}" + _GAP + r"[=:]" + _GAP
                        + r"[\"']?((?:[A-Za-z0-9_.+/=-]+)[ \t]+[^\r\n\"']{3,})")
# The rules, in RE2 syntax: each match's group 1 (when present) or whole match is the secret.
_TOKEN_RULES = [(fmt["pattern"], _HOW[fmt["mask"]]) for fmt in TABLE["token_formats"]] + [
    (r"://[^/\s:@]{1,256}:([^/\s@]{1,256})@", HIDE),  # scheme://user:password@host
    (r"(?i)\b(?:" + "|".join(SPACE_WORDS) + r")[ \t]+([A-Za-z0-9._~+/=-]{8,})", FINGERPRINT),
    (_AUTHORIZATION_VALUE, FINGERPRINT),
    (r"(?i)(?:" + "|".join(re.escape(w) for w in FLAG_WORDS) + r")[ \t]+([^\s\"']{3,})", HIDE),
    (r"(?i)\b(?:" + "|".join(SQL_WORDS) + r")[ \t]+'([^']{1,256})'", HIDE),
    (r"(?i)(?:" + "|".join(s for s in ASSIGN_SUFFIXES if s not in _ASSIGN_WHOLE_WORD)
     + ")" + _QUOTE + "{0,2}" + _GAP + r"(?:=>|" + _SIGN + ")" + _GAP + _QUOTE + "?" + _VALUE + "{3,})", HIDE),
    (r"(?i)(?:\b|_)(?:" + "|".join(_ASSIGN_WHOLE_WORD) + ")" + _QUOTE + "{0,2}" + _GAP
     + _SIGN + " {0,2}" + _QUOTE + "?" + _VALUE + "{8,})", HIDE),
]


def trigger_words() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """What the native triggers are configured with (``_native.configure_triggers``): the same
    lists TRIGGER is built from."""
    return (TOKEN_PREFIXES, ASSIGN_SUFFIXES, _ASSIGN_WHOLE_WORD, SPACE_WORDS + FLAG_WORDS + SQL_WORDS)


def _looks_like_a_code(text: str, key_start: int, value: str) -> bool:
    """An authorization code is long and mixes letters with digits or punctuation; an error
    code is a word (``AccessDenied``) or a number."""
    return not value.isdigit() and not value.isalpha()


def _holds_a_secret(text: str, key_start: int, value: str) -> bool:
    """Not every ``...key: value`` holds one: ``hashed_token`` (GitHub's audit log) holds a digest,
    and ``{"key": "User-Agent", "value": ...}`` (Entra's ``additionalDetails``, tag lists) is
    the name of a pair, not a key."""
    if text[max(0, key_start - 7):key_start].lower().rstrip("_-. ").endswith(("hashed", "hash")):
        return False
    return not (text[key_start - 1:key_start] == '"' and text[key_start:key_start + 5].lower() == 'key":')
# An assignment whose value is an auth scheme ("Authorization: Bearer x"): the credential is the
# word after it, which the scheme rule masks.
_SCHEMES = frozenset(SPACE_WORDS)
_RULES = [(re2.compile(pattern), how) for pattern, how in _TOKEN_RULES]
# Every rule in one pattern: a string the triggers pick but no rule matches (``"code": 200`` in an
# audit record, a JSON key ending in "key") costs one search instead of one per rule.
_ANY_RULE = re2.compile("|".join(f"(?:{pattern})" for pattern, _ in _TOKEN_RULES))
# Rules whose matches are secrets only when this says so.
_ACCEPT = {len(_RULES) - 2: _holds_a_secret, len(_RULES) - 1: _looks_like_a_code,
           len(_RULES) - 5: lambda text, start, value: value.split(None, 1)[0].lower() not in _SCHEMES}


def native_rules() -> list[tuple[str, int, int]]:
    """The rules as the native masker takes them: (RE2 pattern, how, which ``_ACCEPT`` test),
    the tests by code (``mask::Accept``: 1 holds a secret, 2 looks like a code, 3 not a scheme
    word), in the order they run here."""
    codes = {_holds_a_secret: 1, _looks_like_a_code: 2}
    return [(pattern, how, codes.get(_ACCEPT.get(number), 3 if number in _ACCEPT else 0))
            for number, (pattern, how) in enumerate(_TOKEN_RULES)]


def native_table_lines() -> list[str]:
    """Everything the native masker is built from, one hex-encoded value per line
    (``native/fuzz/masking_table.txt``, which the fuzz target builds its masker from; a test
    keeps that file equal to this)."""
    def hexed(text: str) -> str:
        return text.encode().hex()

    prefixes, assignments, whole, space = trigger_words()
    lines = [f"{part}\t{hexed(word)}" for part, words in (("prefix", prefixes), ("assign", assignments),
                                                         ("whole", whole), ("space", space), ("scheme", SPACE_WORDS))
             for word in words]
    return lines + [f"rule\t{how}\t{accept}\t{hexed(pattern)}" for pattern, how, accept in native_rules()]


def _native_masker():
    """``mask_text`` in the native core, or None (the reference core, or rules it cannot
    compile: said once, and masking stays right, only slower)."""
    native = native_module()
    if native is None or not hasattr(native, "Masker"):
        return None
    try:
        return native.Masker(trigger_words(), native_rules(), list(SPACE_WORDS), MASK_PREFIX, OPAQUE, masked,
                             mask_text)
    except ValueError as exc:
        log.warning("masking runs in Python: the native core cannot compile the rules (%s)", exc)
        return None


def _replacement(secret: str, how: int) -> str:
    if how == FINGERPRINT:
        return masked(secret)
    return OPAQUE


def _is_mask(text: str) -> bool:
    return text.startswith(MASK_PREFIX) or text == OPAQUE


# The same triggers on RE2, for all but the shortest strings: Python's engine tries every
# alternative at every position (7 us for 30 characters, 190 us for 760, half a second a
# megabyte); RE2 is linear with a small constant (2.5 to 6 us through its Python binding).
_TRIGGER_LONG = re2.compile(TRIGGER.pattern)


# The triggers over a whole serialized request: a string's bytes stand in it as they are, but what
# precedes a string is a length byte, which may be a word character, so the token prefixes go
# without their word boundary here (a superset: it may pick a request the per-string check would
# not, never the reverse).
# Latin-1: every byte is one character, so bytes that are not UTF-8 (an AnyValue's bytes) match
# the negated classes as the per-string check's replacement characters do.
_LATIN1 = re2.Options()
_LATIN1.encoding = re2.Options.Encoding.LATIN1
BYTES_TRIGGER = re2.compile(TRIGGER.pattern.replace(r"\b(?:", "(?:", 1).encode(), _LATIN1)


def triggered(text: str) -> bool:
    """Whether ``text`` may hold a secret the rules find (``TRIGGER``)."""
    if len(text) > 16:
        return _TRIGGER_LONG.search(text) is not None
    return TRIGGER.search(text) is not None


def mask_text(text: str, trigger=triggered) -> str:
    """``text`` with every secret the rules find replaced; unchanged when there is none.
    ``trigger``: the gate (the native build passes its Rust twin of ``TRIGGER``)."""
    if not trigger(text) or _ANY_RULE.search(text) is None:
        return text
    for number, (pattern, how) in enumerate(_RULES):
        if not pattern.search(text):
            continue
        accept = _ACCEPT.get(number)
        out, last = [], 0
        for m in pattern.finditer(text):
            start, end = (m.start(1), m.end(1)) if m.re.groups else (m.start(), m.end())
            secret = text[start:end]
            if not secret or _is_mask(secret) or secret.lower() in _SCHEMES or (
                    accept is not None and not accept(text, m.start(), secret)):
                continue
            out.append(text[last:start])
            out.append(_replacement(secret, how))
            last = end
        if out:
            out.append(text[last:])
            text = "".join(out)
    return text


NATIVE_MASKER = _native_masker()


def mask_secrets(text: str) -> str:
    """``mask_text`` by the native masker when the native core is built: what events and their
    OCSF form use for the record values they carry."""
    return NATIVE_MASKER.mask(text) if NATIVE_MASKER is not None else mask_text(text)


# -- walking a request --------------------------------------------------------------------------
_TEXT, _ATTRIBUTES, _ANY, _MESSAGE, _SKIP = 1, 2, 3, 4, 0
# Messages whose own ``attributes`` may not carry a forged copy of what the processor writes.
_STRIPPED = frozenset({"opentelemetry.proto.resource.v1.Resource", "opentelemetry.proto.trace.v1.Span",
                       "opentelemetry.proto.logs.v1.LogRecord"})
_RECORD_FIELDS = frozenset({"spans", "log_records"})
_FIELD_KIND: dict = {}


def _kind_of(fd) -> int:
    if fd.type == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if fd.type != FieldDescriptor.TYPE_MESSAGE:
        return _SKIP
    name = fd.message_type.full_name
    if name == "opentelemetry.proto.common.v1.KeyValue":
        return _ATTRIBUTES
    if name == "opentelemetry.proto.common.v1.AnyValue":
        return _ANY
    return _MESSAGE


@dataclass
class Redactor:
    """Masks OTLP messages in place.

    ``extra_keys``: site-specific credential key names (glob patterns, any case).
    ``extra_patterns``: site-specific secret formats (RE2 syntax); with any set, every string of
    every request is checked, since the triggers cannot know them.
    """

    extra_keys: tuple[str, ...] = ()
    extra_patterns: tuple[str, ...] = ()
    trigger: object = triggered  # the gate of mask_text; the pipeline gives the compiled one when built
    _keys: dict[str, int] = field(default_factory=dict, repr=False)
    _extra: list = field(default_factory=list, repr=False)
    _native: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.extra_keys = tuple(k.lower() for k in self.extra_keys)
        self._extra = [re2.compile(p) for p in self.extra_patterns]
        self._native = NATIVE_MASKER

    @property
    def checks_every_string(self) -> bool:
        return bool(self._extra)

    def key_action(self, key: str) -> int:
        """SAFE, FINGERPRINT or HIDE for an attribute key (memoised; bounded)."""
        found = self._keys.get(key)
        if found is None:
            found = classify_key(key, self.extra_keys)
            if len(self._keys) >= 65_536:
                self._keys.clear()
            self._keys[key] = found
        return found

    def text(self, value: str) -> str:
        native = self._native
        out = native.mask(value) if native is not None else mask_text(value, self.trigger)
        for pattern in self._extra:
            out = pattern.sub(OPAQUE, out)
        return out

    # AnyValue and attribute lists -------------------------------------------------------------
    def _any(self, value, strings: bool = True) -> None:
        """Masks what an AnyValue holds; ``strings`` False checks only the keys of maps inside it
        (the caller knows no string of the request can hold a secret the rules find)."""
        kind = value.WhichOneof("value")
        if not strings and kind != "array_value" and kind != "kvlist_value":
            return
        if kind == "string_value":
            text = value.string_value
            new = self.text(text)
            if new != text:
                value.string_value = new
        elif kind == "bytes_value":
            text = value.bytes_value.decode("utf-8", "replace")
            new = self.text(text)
            if new != text:
                value.string_value = new  # a masked byte string is a string from here on
        elif kind == "array_value":
            for item in value.array_value.values:
                self._any(item, strings)
        elif kind == "kvlist_value":
            self.attributes(value.kvlist_value.values, strip=False, strings=strings)

    def _hide(self, value, how: int) -> None:
        """Replace a credential-bearing value whole, whatever its type."""
        kind = value.WhichOneof("value")
        if kind is None:
            return
        if kind == "array_value":
            for item in value.array_value.values:
                self._hide(item, how)
            return
        if kind == "kvlist_value":
            for kv in value.kvlist_value.values:
                if _names_the_credential(kv.key):
                    self._any(kv.value)  # an id, not the secret: kept, still scanned for secrets
                else:
                    self._hide(kv.value, how)
            return
        if kind == "string_value":
            raw = value.string_value
        elif kind == "bytes_value":
            raw = value.bytes_value.decode("utf-8", "surrogateescape")
        else:
            raw = str(getattr(value, kind))
        if raw and _is_mask(raw):
            return
        value.Clear()
        value.string_value = _replacement(raw, how) if raw else ""

    def attributes(self, kvs, strip: bool, strings: bool = True) -> None:
        """Mask a repeated KeyValue field; ``strip`` also drops forged ``nhi.*`` attributes."""
        doomed = []
        for i, kv in enumerate(kvs):
            key = kv.key
            if strip and key in OUR_ATTRIBUTES:
                doomed.append(i)
                continue
            how = self.key_action(key)
            if how:
                self._hide(kv.value, how)
            elif kv.HasField("value"):
                self._any(kv.value, strings)
        for i in reversed(doomed):
            del kvs[i]

    def attributes_at(self, kvs, indices, strip: bool) -> dict[str, int]:
        """Masks the attributes at ``indices`` (what the native reader found, in order), then
        drops forged ``nhi.*`` ones when ``strip``; returns the keys whose values changed, each
        with the last index it was masked at (before any was dropped)."""
        changed = {}
        for i in indices:
            kv = kvs[i]
            how = self.key_action(kv.key)
            if how:
                self._hide(kv.value, how)
            elif kv.HasField("value"):
                self._any(kv.value)
            changed[kv.key] = i
        if strip:
            for i in reversed([i for i, kv in enumerate(kvs) if kv.key in OUR_ATTRIBUTES]):
                del kvs[i]
        return changed

    # messages ---------------------------------------------------------------------------------
    def message(self, msg, skip_records: bool = False, strings: bool = True) -> None:
        """Every string, KeyValue and AnyValue of ``msg`` and what it holds. Driven by the protobuf
        descriptors, so a field added to OTLP is covered without a change here. With
        ``skip_records``, spans and log records are left to ``message`` calls of their own."""
        strip = msg.DESCRIPTOR.full_name in _STRIPPED
        for fd, value in msg.ListFields():
            kind = _FIELD_KIND.get(fd)
            if kind is None:
                kind = _FIELD_KIND[fd] = _kind_of(fd)
            if kind == _TEXT:
                if not strings:
                    continue
                if fd.is_repeated:
                    for i, item in enumerate(value):
                        new = self.text(item)
                        if new != item:
                            value[i] = new
                else:
                    new = self.text(value)
                    if new != value:
                        setattr(msg, fd.name, new)
            elif kind == _ATTRIBUTES:
                self.attributes(value, strip and fd.name == "attributes", strings)
            elif kind == _ANY:
                self._any(value, strings)
            elif kind == _MESSAGE:
                if not fd.is_repeated:
                    self.message(value, skip_records, strings)
                elif not (skip_records and fd.name in _RECORD_FIELDS):
                    for item in value:
                        self.message(item, skip_records, strings)

    def request(self, request, data: bytes | None = None) -> None:
        """A whole export request: resources, scopes, records and everything below them.

        With the request's wire bytes, one linear pass over them (``BYTES_TRIGGER``) decides
        whether any of its strings needs checking at all; the keys are always checked."""
        strings = True
        if data is not None and not self._extra:
            strings = BYTES_TRIGGER.search(data) is not None
        self.message(request, strings=strings)


def redactor_for(config) -> Redactor:
    """The redactor a MaskingConfig asks for."""
    return Redactor(tuple(config.extra_keys), tuple(config.extra_patterns))
