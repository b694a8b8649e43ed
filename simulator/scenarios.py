"""Scenarios: attacks and benign look-alikes as data (``scenarios/*.yaml``), and how they are played.

The schema is documented in ``scenarios/README.md``. A scenario names the archetype it targets,
when it starts (day and hour after the history), and a list of steps from a small vocabulary.
Playing a scenario picks real fleet members (so the actors look exactly like their peers),
produces calls, and returns a ``Label`` that lives beside the replay, never inside telemetry.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import random
from dataclasses import dataclass, field

from otel_processor.errors import ConfigError
from otel_processor.yamlbind import load_file

from .behaviour import DAY, HOUR, S, Call, normal_calls
from .fleet import ARCHETYPES, FleetBuilder, SimIdentity
from .vendor_shapes import OTEL, SOURCES

SCENARIO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scenarios")
# The audit logs each archetype's records really arrive in (besides OpenTelemetry).
SOURCES_OF = {"ci_role": ("cloudtrail",), "rotation_role": ("cloudtrail",), "iam_user_key": ("cloudtrail",), "k8s_sa": ("kubernetes",),
              "gcp_sa": ("gcp_audit",), "oauth_app": ("entra_signin",), "mailbox": ("m365", "entra_audit"),
              "human": ("m365", "entra_audit")}
STEP_KINDS = ("calls", "forwarding_rule", "consent", "new_secret", "routine", "outage", "retire")
ACTORS = ("target", "app", "new", "group")


@dataclass
class Step:
    do: str
    at_s: float = 0.0
    actor: str = "target"
    count: int = 1
    over_s: float = 60.0
    actions: list[str] = field(default_factory=list)
    new_targets: int = 0
    targets: list[str] = field(default_factory=list)
    network: str = "usual"
    user_agent: str = "usual"
    outcome: str = "ok"
    denied_share: float = 0.0
    volume_x: float = 1.0
    rate_x: float = 1.0
    country: str | None = None
    to: str | None = None
    scopes: str | None = None
    hours: float = 24.0
    source: str = ""            # the audit log the step's records arrive in (default: the world's)
    session: str = "usual"      # a role's session name: "usual" (a run id) or "instance" (an EC2 instance id)
    networks: int = 1           # calls: how many networks of the `network` kind the calls come from

    def validate(self) -> None:
        if self.networks < 1 or (self.networks > 1 and self.network not in ("new_public", "new_private")):
            raise ValueError("steps.networks: more than one network needs network: new_public or new_private")
        if self.session not in ("usual", "instance"):
            raise ValueError(f"steps.session: {self.session!r} is not one of usual, instance")
        if self.source and self.source not in SOURCES:
            raise ValueError(f"steps.source: {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.do not in STEP_KINDS:
            raise ValueError(f"steps.do: {self.do!r} is not one of {', '.join(STEP_KINDS)}")
        if self.actor not in ACTORS:
            raise ValueError(f"steps.actor: {self.actor!r} is not one of {', '.join(ACTORS)}")
        if self.count < 1 or self.over_s <= 0 or self.at_s < 0:
            raise ValueError("steps: count must be >= 1, over_s > 0 and at_s >= 0")
        if self.outcome not in ("ok", "denied", "unavailable"):
            raise ValueError(f"steps.outcome: {self.outcome!r} is not ok, denied or unavailable")
        if not 0 <= self.denied_share <= 1:
            raise ValueError("steps.denied_share must be between 0 and 1")
        if self.volume_x <= 0 or self.rate_x <= 0 or self.hours <= 0:
            raise ValueError("steps.volume_x, rate_x and hours must be positive")
        if not (self.network in ("usual", "new_public", "new_private") or self.network.count(".") == 3):
            raise ValueError(f"steps.network: {self.network!r}: use usual, new_public, new_private or a "
                             "prefix like '172.19.44.'")


@dataclass
class Scenario:
    name: str
    kind: str
    description: str
    targets: str
    references: list[str] = field(default_factory=list)
    day: int = 1
    hour: float = 10.0
    must_detect: bool = False
    steps: list[Step] = field(default_factory=list)
    source: str = ""

    def validate(self) -> None:
        if self.kind not in ("attack", "benign"):
            raise ValueError(f"kind: {self.kind!r} must be attack or benign")
        if self.targets not in ARCHETYPES:
            raise ValueError(f"targets: {self.targets!r} is not one of {', '.join(ARCHETYPES)}")
        if self.kind == "attack" and not self.must_detect:
            raise ValueError("must_detect: an attack scenario must be detected (set must_detect: true)")
        if self.kind == "benign" and self.must_detect:
            raise ValueError("must_detect: a benign look-alike must not be detected")
        if not 1 <= self.day <= 2 or not 0 <= self.hour < 24:
            raise ValueError("day must be 1 or 2 (after the history) and hour within 0-24")
        if self.kind == "attack" and not self.references:
            raise ValueError("references: an attack needs MITRE ATT&CK and OWASP NHI references")
        for step in self.steps:
            archetype = "oauth_app" if step.actor == "app" else self.targets
            if step.do == "new_secret" and archetype != "oauth_app":
                raise ValueError("steps.do: new_secret is for an application (targets: oauth_app, or actor: app)")
            if step.source and step.source != OTEL and step.source not in SOURCES_OF.get(archetype, ()):
                raise ValueError(f"steps.source: {archetype} records do not arrive in {step.source} "
                                 f"(they do in: {', '.join((OTEL,) + SOURCES_OF.get(archetype, ()))})")


@dataclass
class Label:
    """Ground truth for one scenario, kept beside the replay."""

    scenario: str
    kind: str
    identity_ids: list[str]
    start_ns: int
    end_ns: int
    description: str = ""


def load_scenario(path: str) -> Scenario:
    scenario = load_file(path, Scenario)
    scenario.source = path
    return scenario


def load_scenarios(paths: list[str] | None = None) -> list[Scenario]:
    """Scenario files (or folders of them); the packaged ``scenarios/`` folder by default."""
    files: list[str] = []
    for p in paths or [SCENARIO_DIR]:
        files += sorted(glob.glob(os.path.join(p, "*.yaml"))) if os.path.isdir(p) else [p]
    scenarios = [load_scenario(f) for f in files]
    names = [s.name for s in scenarios]
    for s in scenarios:
        if names.count(s.name) > 1:
            raise ConfigError(f"name: {s.name!r} is used by more than one scenario", s.source)
    return scenarios


class Player:
    """Plays scenarios against a fleet; picks distinct actors so scenarios do not overlap."""

    def __init__(self, fleet: list[SimIdentity], history_end_ns: int, seed: int):
        self.fleet = fleet
        self.history_end_ns = history_end_ns
        self.rnd = random.Random(seed + 1)
        self.builder = FleetBuilder(seed + 2)
        self.builder.used.update(i.key.split(":")[-1] for i in fleet)
        self.taken: set[str] = set()
        self.extra_identities: list[SimIdentity] = []

    def _pick(self, archetype: str, whole_group: bool) -> list[SimIdentity]:
        members = [i for i in self.fleet if i.archetype == archetype and i.key not in self.taken]
        if not members:
            raise ConfigError(f"the fleet has no free {archetype} for this scenario; raise --identities")
        if whole_group:
            return members
        chosen = members[self.rnd.randrange(len(members))]
        self.taken.add(chosen.key)
        return [chosen]

    def _new_like(self, ident: SimIdentity) -> SimIdentity:
        """A fresh identity of the same archetype that behaves like ``ident`` (rotation, new SA)."""
        b = self.builder
        maker = {
            "api_key": lambda: b.api_key(ident.resource[0][1]),
            "k8s_sa": lambda: b.k8s_sa(ident.attrs["user.id"].split(":")[2], b.word()),
            "oauth_app": lambda: b.oauth_app(),
            "gcp_sa": lambda: b.gcp_sa(dict(ident.resource)["cloud.account.id"]),
        }.get(ident.archetype)
        new = maker() if maker else dataclasses.replace(ident)
        if ident.archetype == "api_key":  # a rotated key: same integration, same habits
            new.habits = ident.habits
            new.resource = ident.resource
        return new

    def play(self, scenario: Scenario) -> tuple[list[tuple[SimIdentity, Call]], list[SimIdentity], Label]:
        start = self.history_end_ns + (scenario.day - 1) * DAY + int(scenario.hour * HOUR)
        whole = any(step.actor == "group" for step in scenario.steps)
        targets = self._pick(scenario.targets, whole)
        calls: list[tuple[SimIdentity, Call]] = []
        new_identities: list[SimIdentity] = []
        app: SimIdentity | None = None
        labelled = list(targets)
        end = start
        for step in scenario.steps:
            t0 = start + int(step.at_s * S)
            if step.actor == "app":
                if app is None:
                    raise ConfigError("steps.actor: app needs an earlier consent step", scenario.source)
                actors = [app]
            elif step.actor == "new":
                fresh = self._new_like(targets[0])
                fresh.active_from_ns = t0
                fresh.active_until_ns = None
                new_identities.append(fresh)
                labelled.append(fresh)
                actors = [fresh]
            else:
                actors = targets
            for actor in actors:
                made = self._step(scenario, step, actor, t0)
                if step.do == "consent":
                    app = made[1]
                    new_identities.append(app)
                    labelled.append(app)
                    made = made[0]
                calls += made
            end = max([end, t0 + int(step.over_s * S)] + [c.time_ns for _, c in calls])
        window_end = max(end, start + HOUR)
        label = Label(scenario.name, scenario.kind, [i.identity_id for i in labelled], start, window_end,
                      scenario.description)
        return calls, new_identities, label

    def _new_secret(self, step: Step, app: SimIdentity, t0: int) -> list:
        """An administrator adds a client secret to the app (Entra ID's "Add service principal
        credentials"); the app then signs in with it and works as the step says (its usual
        network and client unless told otherwise)."""
        r = self.rnd
        admin = self.builder.human()
        key = "%08x-%04x-4%03x-8%03x-%012x" % (r.getrandbits(32), r.getrandbits(16), r.getrandbits(12),
                                               r.getrandbits(12), r.getrandbits(48))
        h = app.habits
        attrs = {"oauth.client.id": app.attrs["oauth.client.id"]}
        out = [(admin, Call(t0, "credential.created", "", f"{r.choice(admin.habits.networks)}{r.randrange(2, 250)}",
                            admin.habits.user_agent, extra={"attrs": attrs, "key_id": key, "source": "entra_audit"}))]
        network = self._network(step, app)
        actions = step.actions or h.actions
        for k in range(step.count):
            t = t0 + int(step.at_s * S) + int(k * step.over_s * S / step.count) + r.randrange(0, S)
            ua = h.user_agent if step.user_agent == "usual" else step.user_agent
            action = actions[k % len(actions)]
            out.append((app, Call(t, action, h.targets[k % len(h.targets)],
                                  f"{network or r.choice(h.networks)}{r.randrange(2, 250)}", ua, "ok",
                                  int(h.volume * step.volume_x), step.country or h.country,
                                  # its sign-ins in Entra ID's shape, where the key they used is named;
                                  # its work in the world's shape, as the rest of its history
                                  {"key_id": key, "source": "entra_signin" if action.startswith("token.") else None})))
        return out

    def _network(self, step: Step, ident: SimIdentity) -> str | None:
        if step.network == "usual":
            return None
        if step.network == "new_public":
            return self.builder.public_prefix()
        if step.network == "new_private":
            return f"10.{self.rnd.randrange(150, 250)}.{self.rnd.randrange(0, 250)}."
        return step.network

    def _step(self, scenario: Scenario, step: Step, ident: SimIdentity, t0: int):
        r = self.rnd
        h = ident.habits
        network = self._network(step, ident)
        ua = None if step.user_agent == "usual" else step.user_agent
        if step.do == "retire":
            ident.active_until_ns = t0
            return []
        if step.do == "routine":
            # Ordinary behaviour from t0, changed as the step says. The identity's background keeps
            # running (a new identity joins the fleet and gets one), so only the change is made here:
            # extra copies for a rate above normal, or a replacement for a changed network or client.
            if step.actor == "new":
                return []
            overrides = {}
            if network:
                overrides["network"] = network
            if ua:
                overrides["user_agent"] = ua
            end = t0 + int(step.hours * HOUR)
            copies = max(0, round(step.rate_x) - 1)
            if overrides:
                ident.extra_override = (t0, end)  # the background stops in this window
                copies += 1
            out = []
            for _ in range(copies):
                out += [(ident, c) for c in normal_calls(ident, t0, end, r, overrides)]
            return out
        if step.do == "outage":
            out = []
            for c in normal_calls(ident, t0, t0 + int(step.over_s * S), r):
                c.outcome = "unavailable"
                out.append((ident, c))
                for retry in range(2):
                    out.append((ident, dataclasses.replace(c, time_ns=c.time_ns + (retry + 1) * 2 * S)))
            return out
        if step.do == "forwarding_rule":
            to = step.to or f"{self.builder.word()}@{self.builder.word()}-mail.example"
            attrs = {"email.from.address": ident.attrs.get("user.id", ""), "email.to.address": to,
                     "email.subject": "Forward all"}
            address = f"{network or r.choice(h.networks)}{r.randrange(2, 250)}"
            return [(ident, Call(t0, "mailbox.forwarding_rule.created", "", address, ua or h.user_agent,
                                 extra={"attrs": attrs, "source": step.source}))]
        if step.do == "consent":
            app = self.builder.oauth_app()
            app.active_from_ns = t0
            app.active_until_ns = t0  # no routine of its own: it only does what the scenario says
            attrs = {"oauth.client.id": app.attrs["oauth.client.id"], "oauth.scopes": step.scopes or "Mail.Read"}
            address = f"{network or r.choice(h.networks)}{r.randrange(2, 250)}"
            return [(ident, Call(t0, "oauth.consent.granted", "", address, ua or h.user_agent,
                                 extra={"attrs": attrs, "source": step.source}))], app
        if step.do == "new_secret":
            return self._new_secret(step, ident, t0)
        # calls: a burst of activity
        actions = step.actions or h.actions
        targets = list(step.targets)
        if step.new_targets:
            base = h.targets[0].rsplit("/", 1)[0] if h.targets and "/" in h.targets[0] else "internal"
            targets += [f"{base}/{self.builder.word()}-{k}" for k in range(step.new_targets)]
        targets = targets or h.targets
        prefixes = [network or r.choice(h.networks)] + [self._network(step, ident) for _ in range(step.networks - 1)]
        addresses = [f"{prefix}{r.randrange(2, 250)}" for prefix in prefixes for _ in range(3 if len(prefixes) == 1 else 1)]
        out = []
        session = f"i-{r.getrandbits(68):017x}" if step.session == "instance" else f"gha-{r.getrandbits(40):010x}"
        key = f"ASIA{r.getrandbits(64):016X}"
        for k in range(step.count):
            t = t0 + int(k * step.over_s * S / step.count) + r.randrange(0, S)
            outcome = step.outcome
            if step.denied_share and r.random() < step.denied_share:
                outcome = "denied"
            address = addresses[k % len(addresses)] if step.networks > 1 else r.choice(addresses)
            out.append((ident, Call(t, actions[k % len(actions)], targets[k % len(targets)], address,
                                    ua or h.user_agent, outcome, int(h.volume * step.volume_x),
                                    step.country or h.country, {"session": session, "access_key": key,
                                                                "run": str(r.randrange(10**9)),
                                                                "source": step.source})))
        return out
