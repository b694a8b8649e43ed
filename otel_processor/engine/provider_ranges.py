"""Cloud providers' published address ranges: AWS ``ip-ranges.json``, Google Cloud ``cloud.json``
and Azure's service tags, kept as one compact file (``provider_ranges.json`` beside the rules
file) that ``nhi-processor ranges refresh`` writes from the files a user downloads.

Why: an instance or pod credential used from a public address outside every provider's ranges
has left the cloud it was issued in, whatever client used it (GuardDuty's
InstanceCredentialExfiltration.OutsideAWS reasons the same way). Providers add addresses every
week, so the file says when each provider published its ranges and a check warns when the
oldest is more than ``MAX_AGE_DAYS`` old.
"""

from __future__ import annotations

import bisect
import datetime as dt
import ipaddress
import json
import os
import re

MAX_AGE_DAYS = 90
FILE_NAME = "provider_ranges.json"
_MEMO_CAP = 16384  # addresses remembered (about 1.5 MB at most)
_AZURE_DATE = re.compile(r"(20\d{2})(\d{2})(\d{2})")


def _v4(cidr: str) -> tuple[int, int]:
    net = ipaddress.ip_network(cidr)
    return int(net.network_address), int(net.broadcast_address)


# IPv4 networks that are not global (ipaddress' is_global is False): private, shared, loopback,
# link-local, documentation, benchmarking, reserved. Nothing can be said of such an address.
_NOT_GLOBAL_V4 = tuple(_v4(c) for c in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4"))


class ProviderRanges:
    """Merged ranges per IP version, looked up by bisection; a bounded memo per address."""

    def __init__(self, published: dict[str, str], prefixes: dict[str, list[str]]):
        self.published = dict(published)
        self.prefixes = {k: list(v) for k, v in prefixes.items()}
        self._tables = {4: _merged(p for v in prefixes.values() for p in v if ":" not in p),
                        6: _merged(p for v in prefixes.values() for p in v if ":" in p)}
        self._memo: dict[str, bool] = {}

    def outside(self, address: str) -> bool:
        """A public address in none of the providers' ranges (a private, loopback or unparsable
        address is never outside: nothing can be said of it)."""
        found = self._memo.get(address)
        if found is None:
            found = self._outside(address)
            if len(self._memo) >= _MEMO_CAP:
                self._memo.clear()
            if len(address) <= 64:
                self._memo[address] = found
        return found

    def _outside(self, address: str) -> bool:
        parts = address.split(".")
        if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
            # IPv4, most of what records carry, without building an ipaddress object
            value = 0
            for p in parts:
                n = int(p)
                if n > 255:
                    return False
                value = value << 8 | n
            if any(lo <= value <= hi for lo, hi in _NOT_GLOBAL_V4):
                return False
            starts, ends = self._tables[4]
            i = bisect.bisect_right(starts, value) - 1
            return not (i >= 0 and value <= ends[i])
        try:
            ip = ipaddress.ip_address(address[:64].split("%", 1)[0])
        except ValueError:
            return False
        if not ip.is_global:
            return False
        starts, ends = self._tables[ip.version]
        i = bisect.bisect_right(starts, int(ip)) - 1
        return not (i >= 0 and int(ip) <= ends[i])

    def age_days(self, today: dt.date | None = None) -> int:
        """Days since the oldest provider's publication date."""
        today = today or dt.datetime.now(dt.timezone.utc).date()
        dates = [dt.date.fromisoformat(d) for d in self.published.values()]
        return (today - min(dates)).days if dates else 0

    def dump(self, path: str) -> None:
        data = {"format": 1, "providers": {name: {"published": self.published[name], "prefixes": self.prefixes[name]}
                                           for name in sorted(self.published)}}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))

    @classmethod
    def load(cls, path: str) -> "ProviderRanges":
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        providers = data.get("providers") if isinstance(data, dict) else None
        if not isinstance(providers, dict):
            raise ValueError(f"{path}: not a provider ranges file (run nhi-processor ranges refresh)")
        published, prefixes = {}, {}
        for name, entry in providers.items():
            published[name] = str(dt.date.fromisoformat(str(entry["published"])))
            prefixes[name] = [str(p) for p in entry["prefixes"]]
        return cls(published, prefixes)

    @classmethod
    def from_vendor_files(cls, paths: list[str]) -> "ProviderRanges":
        """The providers' own files, as downloaded: recognised by their fields."""
        published, prefixes = {}, {}
        for path in paths:
            try:
                with open(path, encoding="utf-8-sig") as fh:
                    data = json.load(fh)
                name, date, found = _vendor_file(data, os.path.basename(path), os.path.getmtime(path))
                if name is None:
                    raise ValueError("neither AWS ip-ranges.json, Google Cloud cloud.json nor Azure service tags")
                date = str(dt.date.fromisoformat(date))
                for prefix in found:
                    ipaddress.ip_network(prefix, strict=False)
            except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
                raise ValueError(f"{path}: {exc}") from None
            published[name] = max(published.get(name, date), date)
            prefixes[name] = prefixes.get(name, []) + found
        # AWS lists a prefix per service and Azure one per tag and region: collapsed, the three
        # providers' 60,000 prefixes are about 6,600, which keeps the shipped file small and its
        # load quick
        return cls(published, {name: _collapsed(found) for name, found in prefixes.items()})


def _vendor_file(data, file_name: str, mtime: float) -> tuple[str | None, str, list[str]]:
    if not isinstance(data, dict):
        return None, "", []
    if "syncToken" in data and "createDate" in data:  # AWS: "2026-11-30-22-13-07"
        found = [p["ip_prefix"] for p in data.get("prefixes", ()) if "ip_prefix" in p]
        found += [p["ipv6_prefix"] for p in data.get("ipv6_prefixes", ()) if "ipv6_prefix" in p]
        return "aws", str(data["createDate"])[:10], found
    if "syncToken" in data and "creationTime" in data:  # Google Cloud: "2026-11-30T23:17:04.183"
        found = [p.get("ipv4Prefix") or p.get("ipv6Prefix") for p in data.get("prefixes", ())]
        return "gcp", str(data["creationTime"])[:10], [p for p in found if p]
    if "changeNumber" in data and isinstance(data.get("values"), list):  # Azure service tags
        found = [p for v in data["values"] for p in (v.get("properties") or {}).get("addressPrefixes", ())]
        m = _AZURE_DATE.search(file_name)  # ServiceTags_Public_20261130.json; else when it was saved
        date = f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else str(dt.date.fromtimestamp(mtime))
        return "azure", date, found
    return None, "", []


def _collapsed(prefixes: list[str]) -> list[str]:
    nets = [ipaddress.ip_network(p, strict=False) for p in set(prefixes)]
    out = []
    for version in (4, 6):
        out += [str(n) for n in ipaddress.collapse_addresses(n for n in nets if n.version == version)]
    return out


def _merged(prefixes) -> tuple[list[int], list[int]]:
    spans = []
    for text in prefixes:
        net = ipaddress.ip_network(text, strict=False)
        spans.append((int(net.network_address), int(net.broadcast_address)))
    spans.sort()
    starts: list[int] = []
    ends: list[int] = []
    for lo, hi in spans:
        if ends and lo <= ends[-1] + 1:
            ends[-1] = max(ends[-1], hi)
        else:
            starts.append(lo)
            ends.append(hi)
    return starts, ends


_loaded: dict[tuple[str, int, int], ProviderRanges] = {}


def beside(rules_path: str | None) -> ProviderRanges | None:
    """The ranges file beside a rules file, when there is one. Kept while the file is unchanged:
    every engine and every SIGHUP reads the rules, and parsing the shipped file takes a tenth of
    a second; the table is only ever read."""
    if not rules_path:
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(rules_path)), FILE_NAME)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _loaded:
        if len(_loaded) >= 8:
            _loaded.clear()
        _loaded[key] = ProviderRanges.load(path)
    return _loaded[key]
