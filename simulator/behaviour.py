"""Habits into telemetry: each archetype's calls rendered as the spans and log records its real
counterpart would produce (TELEMETRY.md), plus normal day-to-day generation with rhythm and jitter.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from .fleet import ACCOUNT, CORP_DOMAIN, GITHUB_OIDC_PROVIDER, SimIdentity
from .records import CLIENT, INTERNAL, SERVER, SimRecord

S = 10**9
HOUR = 3600 * S
DAY = 24 * HOUR


@dataclass
class Call:
    """One thing an identity does, before rendering. ``outcome``: ok, denied, unavailable."""

    time_ns: int
    action: str
    target: str
    address: str
    user_agent: str
    outcome: str = "ok"
    volume: int = 1
    country: str | None = None
    extra: dict | None = None


def _ids(rnd: random.Random) -> tuple[bytes, bytes]:
    return rnd.getrandbits(128).to_bytes(16, "big"), rnd.getrandbits(64).to_bytes(8, "big")


def render(ident: SimIdentity, call: Call, rnd: random.Random) -> SimRecord:
    """The record ``ident`` leaves behind when it makes ``call``."""
    trace_id, span_id = _ids(rnd)
    a = ident.archetype
    attrs: dict[str, object] = {}
    ok = call.outcome == "ok"
    status = 200 if ok else (403 if call.outcome == "denied" else 503)
    extra = call.extra or {}
    if a in ("ci_role", "rotation_role", "iam_user_key") or (a == "human" and "/" in call.action):
        service, _, method = call.action.partition("/")
        session = extra.get("session") or f"gha-{rnd.getrandbits(40):010x}"
        key = extra.get("access_key") or f"ASIA{rnd.getrandbits(64):016X}"
        if ident.shape == "iam_user_key":
            principal = {"aws.principal.arn": ident.attrs["user_arn"], "aws.principal.type": "IAMUser",
                         "aws.access_key.id": ident.attrs["access_key"]}
        else:
            if ident.shape == "github_oidc":
                session = "GitHubActions"  # aws-actions/configure-aws-credentials' default
            elif ident.shape == "aws_sso":
                session = ident.attrs["user.id"]  # Identity Center names the session after the person
            role = ident.attrs.get("role") or ident.habits.extra["role"]
            principal = {"aws.principal.arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
                         "aws.principal.type": "AssumedRole", "aws.access_key.id": key}
            if ident.shape == "github_oidc":
                principal["aws.session.web_identity_provider"] = GITHUB_OIDC_PROVIDER
        attrs = {
            "rpc.system": "aws-api", "rpc.service": service, "rpc.method": method, **principal,
            "source.address": call.address, "user_agent.original": call.user_agent, "cloud.region": "eu-west-1",
        }
        if method in ("GetSecretValue", "PutSecretValue"):
            attrs["aws.request.parameters"] = json.dumps({"secretId": call.target})
        elif call.target:
            attrs["aws.request.parameters"] = json.dumps({"name": call.target})
        if not ok:
            attrs["aws.error.code"] = "AccessDenied" if call.outcome == "denied" else "ServiceUnavailableException"
        return SimRecord(call.time_ns, "logs", ident.resource, attrs, trace_id=trace_id, span_id=span_id)
    if a == "k8s_sa":
        verb, _, resource = call.action.partition(" ")
        attrs = {"event.category": "api", "event.action": call.action, "user.id": ident.attrs["user.id"],
                 "url.path": call.target, "source.address": call.address, "user_agent.original": call.user_agent,
                 "http.request.method": verb.upper(), "http.response.status_code": status,
                 "event.outcome": "success" if ok else "failure"}
        return SimRecord(call.time_ns, "logs", ident.resource, attrs, name="k8s.audit", trace_id=trace_id,
                         span_id=span_id)
    if a == "gcp_sa":
        attrs = {"event.category": "api", "event.action": call.action, "user.id": ident.attrs["user.id"],
                 "cloud.resource_id": call.target, "source.address": call.address,
                 "user_agent.original": call.user_agent, "event.outcome": "success" if ok else "failure",
                 "db.response.returned_rows": call.volume}
        if not ok:
            attrs["error.type"] = "PERMISSION_DENIED" if call.outcome == "denied" else "UNAVAILABLE"
        return SimRecord(call.time_ns, "logs", ident.resource, attrs, name="gcp.audit", trace_id=trace_id,
                         span_id=span_id)
    if a == "api_key":
        method, _, route = call.action.partition(" ")
        attrs = {"http.request.method": method, "http.route": route,
                 "url.path": route.replace("{id}", str(rnd.randrange(10**5, 10**6))),
                 "http.request.header.x-api-key": [extra.get("key") or ident.attrs["http.request.header.x-api-key"]],
                 "client.address": call.address, "user_agent.original": call.user_agent,
                 "http.response.status_code": status, "http.response.body.size": call.volume,
                 "server.address": "api.northwind.example"}
        if call.country:
            attrs["geo.country.iso_code"] = call.country
        return SimRecord(call.time_ns, "traces", ident.resource, attrs, name=call.action, span_kind=SERVER,
                         error=status >= 500, trace_id=trace_id, span_id=span_id)
    if a == "ci_pipeline" and call.action != "process.start":
        # what the job's token does at the forge (a clone, an archive download), as an audit event
        attrs = {"event.category": "api", "event.action": call.action, **ident.attrs,
                 "cicd.pipeline.run.id": extra.get("run", str(rnd.randrange(10**9))),
                 "cloud.resource_id": call.target, "source.address": call.address,
                 "user_agent.original": call.user_agent, "event.outcome": "success" if ok else "failure"}
        return SimRecord(call.time_ns, "logs", ident.resource, attrs, name=call.action, trace_id=trace_id,
                         span_id=span_id)
    if a == "ci_pipeline":
        attrs = {"event.category": "process", "event.action": "process.start", **ident.attrs,
                 "cicd.pipeline.run.id": extra.get("run", str(rnd.randrange(10**9))),
                 "process.command_line": call.target, "process.executable.name": call.target.split()[0],
                 "source.address": call.address, "user_agent.original": call.user_agent,
                 "event.outcome": "success" if ok else "failure"}
        return SimRecord(call.time_ns, "logs", ident.resource, attrs, name="process.start", trace_id=trace_id,
                         span_id=span_id)
    if a == "ai_agent":
        attrs = {"gen_ai.operation.name": "execute_tool", **ident.attrs, "gen_ai.tool.name": call.action,
                 "server.address": call.target.split("/", 1)[0], "url.path": "/" + call.target.split("/", 1)[-1],
                 "client.address": call.address, "user_agent.original": call.user_agent,
                 "http.response.status_code": status, "http.response.body.size": call.volume}
        return SimRecord(call.time_ns, "traces", ident.resource, attrs, name=f"execute_tool {call.action}",
                         span_kind=INTERNAL, error=not ok, trace_id=trace_id, span_id=span_id)
    if a == "oauth_app":
        if call.action.startswith(("token.", "signin")):
            attrs = {"event.category": "authentication", "event.action": call.action, **ident.attrs,
                     "source.address": call.address, "user_agent.original": call.user_agent,
                     "event.outcome": "success" if ok else "failure"}
        else:
            method, _, route = call.action.partition(" ")
            users = ident.habits.extra.get("for_users")
            if users:  # delegated: whose mailbox this read was for, in the audit log's shape only
                on_behalf_of = users[trace_id[0] % len(users)]
                route = route.replace("{user}", on_behalf_of)
            attrs = {"event.category": "api", "event.action": call.action, **ident.attrs,
                     "http.request.method": method, "url.path": route, "server.address": call.target,
                     "source.address": call.address, "user_agent.original": call.user_agent,
                     "http.response.status_code": status, "http.response.body.size": call.volume,
                     "event.outcome": "success" if ok else "failure"}
        if call.country:
            attrs["geo.country.iso_code"] = call.country
        bookkeeping = {"key_id": extra["key_id"]} if "key_id" in extra else {}
        if attrs.get("url.path", "").endswith("/messages") and ident.habits.extra.get("for_users"):
            bookkeeping["on_behalf_of"] = attrs["url.path"].split("/")[-2]
        return SimRecord(call.time_ns, "logs", ident.resource, attrs, name=call.action, trace_id=trace_id,
                         span_id=span_id, extra=bookkeeping)
    if a in ("mailbox", "human"):
        category = {"message.received": "email", "message.sent": "email", "mailbox.forwarding_rule.created": "email",
                    "mailbox.rule.created": "email", "oauth.consent.granted": "iam",
                    "credential.created": "iam"}.get(call.action, "authentication")
        attrs = {"event.category": category, "event.action": call.action, **ident.attrs,
                 "source.address": call.address, "user_agent.original": call.user_agent,
                 "event.outcome": "success" if ok else "failure"}
        attrs.update(extra.get("attrs", {}))
        if call.country:
            attrs["geo.country.iso_code"] = call.country
        return SimRecord(call.time_ns, "logs", ident.resource, attrs, name=call.action, trace_id=trace_id,
                         span_id=span_id, extra={"key_id": extra["key_id"]} if "key_id" in extra else {})
    # service workload: CLIENT spans of its own calls
    method, _, route = call.action.partition(" ")
    attrs = {"http.request.method": method, "http.route": route,
             "url.path": route.replace("{id}", str(rnd.randrange(10**6))), "server.address": call.target,
             "network.peer.address": call.address, "user_agent.original": call.user_agent,
             "http.response.status_code": status, "http.response.body.size": call.volume}
    return SimRecord(call.time_ns, "traces", ident.resource, attrs, name=call.action, span_kind=CLIENT,
                     error=status >= 500, trace_id=trace_id, span_id=span_id)


def normal_calls(ident: SimIdentity, start_ns: int, end_ns: int, rnd: random.Random,
                 overrides: dict | None = None) -> list[Call]:
    """What ``ident`` does on ordinary days between start and end (event time)."""
    h = ident.habits
    o = overrides or {}
    out: list[Call] = []
    lo, hi = h.hours
    first = max(start_ns, ident.active_from_ns)
    last = min(end_ns, ident.active_until_ns or end_ns)
    if first >= last:
        return out
    day0 = (first - first % DAY)
    for day_start in range(day0, last, DAY):
        weekday = ((day_start // DAY) + 3) % 7  # epoch was a Thursday
        if h.weekdays_only and weekday >= 5:
            # a little weekend activity for always-on integrations, none for office workloads
            continue
        if h.extra.get("nightly"):
            bursts = 1
        else:
            hours = hi - lo
            expected = h.per_active_hour * hours / max(1, h.burst)
            if weekday >= 5:
                expected *= 0.4
            bursts = max(0, int(rnd.gauss(expected, expected ** 0.5 * 0.5)))
        for _ in range(bursts):
            t = day_start + rnd.randrange(lo * HOUR, hi * HOUR)
            out += _burst(ident, t, rnd, o)
    return [c for c in out if first <= c.time_ns < last]


def _burst(ident: SimIdentity, t: int, rnd: random.Random, o: dict) -> list[Call]:
    """One unit of work: a CI run, a sync, an agent task, a controller tick."""
    h = ident.habits
    prefix = o.get("network", rnd.choice(h.networks))
    address = f"{prefix}{rnd.randrange(2, 250)}"
    ua = o.get("user_agent", h.user_agent)
    a = ident.archetype
    calls: list[Call] = []
    session = f"gha-{rnd.getrandbits(40):010x}"
    key = f"ASIA{rnd.getrandbits(64):016X}"
    extra = {"session": session, "access_key": key, "run": str(rnd.randrange(10**9))}

    def add(action, target, volume=None, outcome=None, step_s=None):
        nonlocal t
        t += int((step_s if step_s is not None else rnd.uniform(0.5, 20)) * S)
        failed = rnd.random() < h.failure_rate
        calls.append(Call(t, action, target, address, ua, outcome or ("denied" if failed and a != "service" else
                                                                       "unavailable" if failed else "ok"),
                          int(volume if volume is not None else max(1, rnd.gauss(h.volume, h.volume * 0.3))),
                          h.country, extra))

    if a in ("ci_role", "iam_user_key"):
        add(h.actions[0], "")
        for secret in h.targets:
            add(h.actions[1], secret)
        for action in h.actions[2:]:
            add(action, "")
    elif a == "rotation_role":
        for secret in h.targets:
            add(h.actions[0], secret, step_s=rnd.uniform(0.2, 1.5))
            add(h.actions[1], secret, step_s=0.2)
    elif a == "ci_pipeline":
        add("git.clone", ident.attrs["vcs.repository.url.full"].split("://", 1)[-1])  # the checkout step
        for command in h.extra["commands"]:
            add("process.start", command, step_s=rnd.uniform(20, 120))
    elif a == "oauth_app":
        add("token.issued", "")
        for action in h.actions[1:]:
            add(action, h.targets[0])
    elif a == "mailbox":
        action = rnd.choice(h.actions)
        sender = f"billing@{rnd.choice(['contoso', 'fabrikam', 'tailspin'])}.example"
        attrs = ({"email.from.address": sender, "email.to.address": ident.attrs["user.id"]}
                 if action == "message.received" else
                 {"email.from.address": ident.attrs["user.id"], "email.to.address": f"finance@{CORP_DOMAIN}"})
        extra = {**extra, "attrs": {**attrs, "email.subject": f"Invoice {rnd.randrange(10**5)}"}}
        add(action, h.targets[0])
    elif a == "human":
        add("signin", h.targets[0])
        for action in rnd.sample(h.actions[1:], min(len(h.actions) - 1, 2)):  # a person's work in AWS
            add(action, "", step_s=rnd.uniform(30, 600))
    else:
        for _ in range(h.burst):
            add(rnd.choice(h.actions), rnd.choice(h.targets))
    return calls
