"""``nhi-processor state show IDENTITY``: an identity's baseline from a running service (its admin
endpoint, ``GET /state/IDENTITY``) or from a state directory (the snapshot a service writes), in
the same form either way (engine/inspect.py): the engine restores the snapshot and describes the
identity exactly as the service does.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

from ..config import ProcessorConfig
from ..engine import Engine
from ..engine.state import StateError
from ..errors import ConfigError
from .serve.service import STATE_FILE


def first_token(path: str | None) -> str | None:
    """The first token of a bearer tokens file (the format ``service.auth`` reads)."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return next((line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")), None)
    except OSError as exc:
        raise ConfigError(f"cannot read the admin token: {exc.strerror}", path) from None


def from_service(endpoint: str, identity: str, timeout: float = 10.0, token: str | None = None) -> dict | None:
    """``endpoint``: the admin listener, ``host:port`` or ``http://host:port``; ``token``: what
    ``service.auth.admin_bearer_tokens_file`` accepts, when the service asks for one."""
    base = endpoint if endpoint.startswith(("http://", "https://")) else f"http://{endpoint}"
    url = f"{base.rstrip('/')}/state/{urllib.parse.quote(identity, safe='')}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - an operator's own endpoint
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise ConfigError(f"the admin endpoint answered {exc.code}: {exc.read()[:200].decode(errors='replace')}",
                          endpoint) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(f"cannot reach the admin endpoint: {getattr(exc, 'reason', exc)}", endpoint) from None


def from_state_dir(directory: str, identity: str, config: ProcessorConfig | None = None) -> dict | None:
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        raise ConfigError(f"no snapshot here ({STATE_FILE} is missing)", directory)
    engine = Engine((config or ProcessorConfig()).engine)
    try:
        engine.restore_from(path)
    except StateError as exc:
        raise ConfigError(str(exc), path) from None
    return engine.describe(identity)


def render(d: dict) -> str:
    """The description as an operator reads it."""
    ident = d["identity"]
    lines = [f"{ident['id']}  ({ident['kind']}, source {ident['source']}, group {ident['group']}"
             + (f", owner {ident['owner']}" if ident.get("owner") else "")
             + (", in the catalog" if ident.get("cataloged") else "") + ")"]
    lines.append(f"  seen          {d['first_seen']} .. {d['last_seen']}, {d['records']} records, "
                 f"last success {d['last_success'] or 'never'}, {d['tier']}")
    lines.append(f"  trust         {d['trust']:.4f}")
    known = ", ".join(f"{n} {name}" for name, n in d["known"].items())
    lines.append(f"  known         {known} (first network {d['first_network'] or 'none'})")
    v = d["volume"]
    lines.append(f"  volume        per {v['window_s']:.0f} s window over {v['windows_seen']} windows: at most "
                 f"{v['max_records']} records, volume {v['max_volume']:g}, {v['max_distinct_targets']} distinct targets")
    f = d["failures"]
    lines.append(f"  failures      at most {f['max_failures']} in a window over {f['windows_seen']} windows")
    s = d["schedule"]
    lines.append(f"  schedule      hours (UTC) {','.join(map(str, s['hours_utc'])) or 'none yet'}; "
                 f"days {','.join(s['weekdays']) or 'none yet'}")
    lines.append(f"  peers         group {d['peers']['group']}: {d['peers']['members']} members seen recently")
    case = d.get("open_case")
    if case:
        lines.append(f"  open case     score {case['score']}, since {case['first_finding']}")
        for facet, reason in case["findings"].items():
            lines.append(f"                {facet}: {reason}")
    incident = d.get("incident")
    if incident:
        lines.append(f"  incident      {incident['convergence_id']} version {incident['version']}, opened "
                     f"{incident['opened']}, last {incident['last']}: {', '.join(incident['facets'])}")
    return "\n".join(lines)
