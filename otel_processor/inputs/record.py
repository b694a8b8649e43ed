"""One vendor record as the profiles read it, and what a profile makes of it.

A vendor record arrives as a dict in several shapes: the vendor's API or streaming JSON
(camelCase, nested), an Azure diagnostic-settings envelope (``properties`` holding the record), a
Log Analytics / Sentinel table row (PascalCase columns, dynamic columns as JSON text, datetime
columns named ``TimeGenerated [UTC]``). ``VendorRecord.get`` hides those differences: names are
matched without regard to case, a dotted path descends into nested objects and into JSON text.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from dataclasses import dataclass, field

import orjson

_MISSING = object()


@dataclass(frozen=True, slots=True)
class IdentityHint:
    """The actor, when the contract's attribute rules cannot say it (a GitHub token, a managed
    identity...). ``owner``: who the credential belongs to (a token's human)."""

    kind: str
    principal: str
    source: str
    owner: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Issuance:
    """A credential handed out: to whom, by whom, from where (the credential's own history)."""

    credential_id: str
    issued_to: str              # the identity (or session) the credential belongs to
    issued_by: str              # the service or actor that created it
    network: str | None = None  # where it was issued from, when known


@dataclass(slots=True)
class Mapped:
    """A vendor record read onto the telemetry contract: the attributes the Collector's own mapping
    would have written (TELEMETRY.md sections 2 and 5), its event time, and what the attributes
    cannot carry."""

    source: str                 # the profile's name
    attrs: dict
    time_ns: int
    identity: IdentityHint | None = None
    record_id: str | None = None
    related: tuple[str, ...] = ()  # principals beside the actor (an impersonation's caller), as named
    issued: Issuance | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record of a known source that is not an identity doing something (a request still in
    progress, a record without an actor): forwarded unchanged, counted, with the reason."""

    source: str
    reason: str
    time_ns: int = 0            # when known: the record is still forwarded, in its place in time


class Unusable(ValueError):
    """A record that claims to be of a source but cannot be read as one (no usable time...)."""


class VendorRecord:
    """Envelope-tolerant read access to one vendor record, case-insensitive where the source's
    exports change case (``fold_case``: Log Analytics' PascalCase columns of Graph's camelCase
    fields); exact elsewhere, which is cheaper.

    ``fallback_ns``: the time to use when the record carries none of its own (an Azure record
    whose ``time`` the Collector moved to the log record's time); None where a record without a
    time is an error (files).
    """

    __slots__ = ("data", "fallback_ns", "fold_case", "_lower")

    def __init__(self, data: dict, fallback_ns: int | None = None, fold_case: bool = True):
        self.data = data
        self.fallback_ns = fallback_ns
        self.fold_case = fold_case
        self._lower: dict[int, dict] | None = None

    def _field(self, obj, name: str):
        if not isinstance(obj, dict):
            return _MISSING
        found = obj.get(name, _MISSING)
        if found is not _MISSING or not self.fold_case:
            return found
        # Case-insensitive: one lower-case index per object, built on its first miss.
        if self._lower is None:
            self._lower = {}
        index = self._lower.get(id(obj))
        if index is None:
            index = self._lower[id(obj)] = {k.lower(): k for k in obj if isinstance(k, str)}
        key = index.get(name.lower())
        return _MISSING if key is None else obj[key]

    def get(self, *paths: str, default=None):
        """The first present, non-empty value among ``paths`` ("a.b.c"; JSON text is parsed
        on the way down, so table exports' dynamic columns read like nested objects)."""
        for path in paths:
            parts = _PARTS.get(path)
            if parts is None:
                parts = _parts(path)
            obj = self.data
            for part in parts:
                if isinstance(obj, str) and obj[:1] in ("{", "["):
                    obj = parse_json_text(obj)
                obj = self._field(obj, part)
                if obj is _MISSING:
                    break
            else:
                if not is_empty(obj):
                    if isinstance(obj, str) and obj[:1] in ("{", "[") and parts[-1].lower() in _JSON_COLUMNS:
                        obj = parse_json_text(obj)
                    return obj
        return default

    def text(self, *paths: str) -> str | None:
        value = self.get(*paths)
        if value is None:
            return None
        return value if isinstance(value, str) else str(value)

    def has(self, name: str) -> bool:
        return self._field(self.data, name) is not _MISSING

    def time(self, *paths: str) -> int:
        """Event time from the first present of ``paths``, else ``fallback_ns``; Unusable naming
        the fields when there is neither."""
        value = self.get(*paths)
        if value is None and self.fallback_ns:
            return self.fallback_ns
        return time_ns(value, " or ".join(paths))

    def inner(self, data) -> "VendorRecord":
        """A nested object read the same way, with the same fallback time (an empty one when
        the field holds no object: ``"protoPayload": 1`` reads as nothing, not as an error)."""
        return VendorRecord(data if isinstance(data, dict) else {}, self.fallback_ns, self.fold_case)


_PARTS: dict[str, tuple[str, ...]] = {}


def _parts(path: str) -> tuple[str, ...]:
    """A dotted path split once (the profiles use a few dozen fixed paths)."""
    parts = tuple(path.split("."))
    if len(_PARTS) < 4096:
        _PARTS[path] = parts
    return parts


# Table-export columns that hold JSON text where the API has nested objects.
_JSON_COLUMNS = frozenset(name.lower() for name in (
    "InitiatedBy", "TargetResources", "LocationDetails", "Status", "AdditionalDetails", "Parameters",
    "ModifiedProperties", "OperationProperties", "Folders", "properties"))


def text_of(value) -> str | None:
    """A field's value as text; None when it is missing, empty, or an object or a list (the
    profiles that read the vendor's dict directly use this in place of ``VendorRecord.text``)."""
    if isinstance(value, str):
        return value or None
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def is_empty(value) -> bool:
    """None, or an empty text, list or object (0 and False are values). Type tests rather than
    ``value != []``, which builds a list to compare with, on every field of every record."""
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def present(attrs: dict) -> dict:
    """``attrs`` without the keys whose value is missing or empty: what every profile maps."""
    return {k: v for k, v in attrs.items()
            if v is not None and (v or not isinstance(v, (str, list, dict)))}  # is_empty, inline


def parse_json_text(text: str):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def time_ns(value, what: str = "time") -> int:
    """Nanoseconds since the epoch from the shapes vendors use: ISO 8601 with or without a zone
    (none means UTC, as M365's CreationTime), with any number of fraction digits; epoch seconds,
    milliseconds or nanoseconds as numbers. Raises Unusable when there is none."""
    if value is None or value == "":
        raise Unusable(f"no {what}")
    if isinstance(value, bool):
        raise Unusable(f"{what} {value!r} is not a time")
    if isinstance(value, (int, float)):
        n = float(value)
        if not 0 < n < 1e20:  # 0, negative, NaN, infinite or past the year 5000: no time
            raise Unusable(f"{what} {value!r} is not a time")
        if n > 1e17:
            return int(n)          # nanoseconds
        if n > 1e14:
            return int(n * 1e3)    # microseconds
        if n > 1e11:
            return int(n * 1e6)    # milliseconds (GitHub's @timestamp)
        return int(n * 1e9)        # seconds
    text = str(value).strip()
    if text.isdigit():
        return time_ns(int(text), what)
    try:
        if len(text) > 64:  # no time is written that long (and the cache below keeps short keys)
            raise ValueError(text)
        found = _portal(text) if "/" in text[:6] else _iso(text)
    except ValueError:
        raise Unusable(f"{what} {text[:40]!r} is not a time") from None
    if found <= 0:  # the epoch itself or before: a zero value written as a date
        raise Unusable(f"{what} {text[:40]!r} is not a time")
    return found


_PORTAL = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}),? (\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))? ?([AP]M)?$",
                     re.IGNORECASE)


def _portal(text: str) -> int:
    """The Azure portal's CSV export of a Log Analytics query: ``11/2/2026, 1:40:00.000 PM``
    (month first, UTC: the column is named ``TimeGenerated [UTC]``)."""
    m = _PORTAL.match(text)
    if not m:
        raise ValueError(text)
    month, day, year, hour, minute, second = (int(x) for x in m.groups()[:6])
    meridiem = (m.group(8) or "").upper()
    if meridiem:
        if not 1 <= hour <= 12:
            raise ValueError(text)
        hour = hour % 12 + (12 if meridiem == "PM" else 0)
    parsed = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone.utc)
    return int(parsed.timestamp()) * 1_000_000_000 + int(((m.group(7) or "") + "000000000")[:9])


@lru_cache(maxsize=4096)
def _iso(text: str) -> int:
    """Cached: audit records of one second share their time text (CloudTrail's eventTime)."""
    text = text.replace(" ", "T", 1) if "T" not in text and " " in text else text
    zone = ""
    if text.endswith("Z") or text.endswith("z"):
        text, zone = text[:-1], "+00:00"
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        text, zone = text[:-6], text[-6:]
    fraction = 0
    if "." in text:
        text, digits = text.split(".", 1)
        if not digits.isdigit():
            raise ValueError(text)
        fraction = int((digits + "000000000")[:9])
    parsed = dt.datetime.fromisoformat(text + (zone or "+00:00"))
    return int(parsed.timestamp()) * 1_000_000_000 + fraction


@dataclass
class SourceCount:
    """What one source gave, for ``convert``'s report."""

    read: int = 0
    mapped: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
