"""A seeded fleet of identities, each with the habits it shows in telemetry.

Every identity has an archetype (Kubernetes service account, CI-assumed cloud role, GCP service
account, integration API key, CI pipeline, AI agent, OAuth app, automation mailbox, human,
service workload), a peer group, its usual actions, targets, networks, client, working hours and
rate. ``behaviour.py`` turns habits into records; ``scenarios.py`` bends them into attacks and
look-alikes. Names come from faker so nothing marks an identity as special.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from faker import Faker

from otel_processor.identity.credentials import fingerprint

ACCOUNT = "402918377410"
ORG = "northwind"
CORP_DOMAIN = "northwind.example"
START_NS = 1_772_409_600 * 10**9  # 2026-03-02 00:00 UTC, a Monday

# Words that name ground truth; generated names never use them, so no record can carry them.
RESERVED_WORDS = ("attack", "benign", "scenario", "must_detect", "malicious", "compromise", "ground_truth")

ARCHETYPES = ("k8s_sa", "ci_role", "gcp_sa", "api_key", "ci_pipeline", "ai_agent", "oauth_app",
              "mailbox", "human", "service", "rotation_role", "iam_user_key")
# Share of the fleet per archetype (the rest are service workloads).
MIX = {"k8s_sa": 0.16, "ci_role": 0.12, "gcp_sa": 0.08, "api_key": 0.12, "ci_pipeline": 0.1,
       "ai_agent": 0.06, "oauth_app": 0.08, "mailbox": 0.05, "human": 0.08, "rotation_role": 0.02}


@dataclass
class Habits:
    actions: list[str]
    targets: list[str]
    networks: list[str]           # CIDR-ish prefixes "10.20.3." (addresses get a random last octet)
    user_agent: str
    hours: tuple[int, int]        # active from, to (UTC, exclusive)
    weekdays_only: bool
    per_active_hour: float        # mean records per active hour
    burst: int = 1                # records per burst (a CI run, a sync, an agent task)
    volume: int = 2_000           # typical bytes or rows per call
    failure_rate: float = 0.01
    country: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class SimIdentity:
    """One simulated actor. ``identity_id`` is what the processor must resolve it to."""

    key: str                      # stable simulator handle (never emitted)
    archetype: str
    identity_id: str
    group: str
    habits: Habits
    attrs: dict                   # how the actor appears on its records
    resource: tuple               # the resource its records are shipped with
    active_from_ns: int = START_NS
    active_until_ns: int | None = None
    # How it signs in when its archetype has more than one way (``authenticate_as_fleets_do``):
    # which fields its records carry, and so which identity the processor must make of it.
    shape: str = ""


def _ip(rnd: random.Random, prefix: str) -> str:
    return f"{prefix}{rnd.randrange(2, 250)}"


class FleetBuilder:
    def __init__(self, seed: int):
        self.rnd = random.Random(seed)
        self.fake = Faker()
        self.fake.seed_instance(seed)
        self.used: set[str] = set()

    def word(self) -> str:
        while True:
            w = self.fake.word().lower()
            if w.isalpha() and w not in self.used and len(w) > 2 and w not in RESERVED_WORDS:
                self.used.add(w)
                return w

    def public_prefix(self) -> str:
        while True:
            ip = self.fake.ipv4_public()
            if not ip.startswith(("10.", "172.", "192.168.", "100.")):
                return ip.rsplit(".", 1)[0] + "."

    # -- archetypes ---------------------------------------------------------------------------
    def k8s_sa(self, ns: str, app: str) -> SimIdentity:
        r = self.rnd
        principal = f"system:serviceaccount:{ns}:{app}"
        resources = ["configmaps", "secrets", "pods", "endpoints", "leases"]
        actions = [f"{v} {res}" for v, res in (("get", "configmaps"), ("watch", "endpoints"), ("list", "pods"),
                                               ("get", "secrets"), ("update", "leases"))[: r.randint(3, 5)]]
        targets = [f"/api/v1/namespaces/{ns}/{res}/{app}-{i}" for res in resources[:3] for i in range(r.randint(1, 3))]
        habits = Habits(actions, targets, [f"10.244.{r.randrange(1, 60)}."], f"{app}/v{r.randint(1, 4)}.{r.randint(0, 9)}.0 "
                        f"(linux/amd64) kubernetes/{r.getrandbits(28):07x}", (0, 24), False, r.uniform(4, 10), 1, 800)
        return SimIdentity(f"k8s:{ns}:{app}", "k8s_sa", f"workload:{principal}", f"k8s:{ns}", habits,
                           {"user.id": principal}, (("service.name", "kube-apiserver"), ("k8s.cluster.name", "prod-eu-1")))

    def ci_role(self, repo: str, pool: str) -> SimIdentity:
        r = self.rnd
        role = f"{repo}-deploy"
        secrets = [f"prod/{repo}/{s}" for s in r.sample(["db-password", "api-token", "signing-key", "queue-url", "smtp"], 2)]
        actions = ["sts.amazonaws.com/AssumeRoleWithWebIdentity", "secretsmanager.amazonaws.com/GetSecretValue",
                   "ecr.amazonaws.com/GetAuthorizationToken", "ecr.amazonaws.com/PutImage", "ecs.amazonaws.com/UpdateService"]
        habits = Habits(actions, secrets, [pool], r.choice(["aws-sdk-js/3.540.0 ua/2.0 os/linux lang/js",
                                                            "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux"]),
                        (7, 19), True, r.uniform(1.5, 3), 8, 600, 0.005)
        arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
        return SimIdentity(f"role:{role}", "ci_role", f"workload:{arn}", f"aws:{ACCOUNT}:{role}", habits,
                           {"role": role}, (("cloud.provider", "aws"), ("cloud.account.id", ACCOUNT)))

    def rotation_role(self, name: str) -> SimIdentity:
        secrets = [f"prod/{self.word()}/{s}" for s in ("db", "api", "queue") for _ in range(12)]
        habits = Habits(["secretsmanager.amazonaws.com/GetSecretValue", "secretsmanager.amazonaws.com/PutSecretValue"],
                        secrets, ["10.20.8."], "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux", (2, 3), False,
                        1.0, len(secrets), 400, 0.0, extra={"nightly": True})
        arn = f"arn:aws:iam::{ACCOUNT}:role/{name}"
        return SimIdentity(f"role:{name}", "rotation_role", f"workload:{arn}", f"aws:{ACCOUNT}:{name}", habits,
                           {"role": name}, (("cloud.provider", "aws"), ("cloud.account.id", ACCOUNT)))

    def gcp_sa(self, project: str) -> SimIdentity:
        r = self.rnd
        name = f"{self.word()}-etl"
        email = f"{name}@{project}.iam.gserviceaccount.com"
        buckets = [f"projects/_/buckets/{project}-{self.word()}" for _ in range(r.randint(2, 4))]
        habits = Habits(["storage.objects.get", "storage.objects.list", "bigquery.jobs.insert"], buckets,
                        [f"10.128.{r.randrange(0, 30)}."], "gcloud-python/3.14.0 google-api-core/2.17",
                        (0, 24), False, r.uniform(2, 5), 3, 50_000)
        return SimIdentity(f"gcp:{email}", "gcp_sa", f"service_account:{email}", f"gcp:{project}", habits,
                           {"user.id": email}, (("cloud.provider", "gcp"), ("cloud.account.id", project)))

    def api_key(self, api: str) -> SimIdentity:
        r = self.rnd
        vendor = self.fake.company().split()[0].strip(",").replace("'", "")
        key = f"pk_live_{r.getrandbits(160):040x}"
        routes = r.sample(["/v2/orders", "/v2/orders/{id}", "/v2/customers/{id}", "/v2/invoices", "/v2/products",
                           "/v2/shipments/{id}"], 3)
        habits = Habits([f"GET {x}" for x in routes], routes, [self.public_prefix()],
                        f"{vendor}-Sync/{r.randint(2, 6)}.{r.randint(0, 9)} (Java/17.0.{r.randint(1, 9)})", (6, 20),
                        True, r.uniform(6, 14), 6, 4_000, 0.01, country=r.choice(["US", "DE", "GB", "NL"]))
        return SimIdentity(f"apikey:{vendor}:{key[-6:]}", "api_key", f"api_key:{fingerprint(key)}", "kind:api_key",
                           habits, {"http.request.header.x-api-key": key},
                           (("service.name", api), ("service.namespace", "partners")))

    def ci_pipeline(self, repo: str, pool: str) -> SimIdentity:
        r = self.rnd
        commands = r.choice([
            ["npm ci", "npm test", "docker build -t registry/app:$SHA .", "docker push registry/app:$SHA"],
            ["pip install -r requirements.txt", "pytest -q", "python -m build", "twine upload dist/*"],
            ["go build ./...", "go test ./...", "docker build .", "kubectl apply -f deploy/"],
        ])
        url = f"https://github.com/{ORG}/{repo}"
        habits = Habits(["process.start"], commands, [pool], "GitHubActionsRunner/2.317.0", (7, 20), True,
                        r.uniform(1.5, 3), len(commands), 1, 0.02, extra={"commands": commands})
        return SimIdentity(f"ci:{repo}", "ci_pipeline", f"ci_job:github.com/{ORG}/{repo}:build", f"ci:{ORG}", habits,
                           {"cicd.pipeline.name": "build", "vcs.repository.url.full": url},
                           (("service.name", "github-actions"),))

    def ai_agent(self) -> SimIdentity:
        r = self.rnd
        name = f"{self.word()}-assistant"
        tools = r.sample(["search_issues", "read_issue", "create_comment", "list_pull_requests", "read_file",
                          "add_label"], 4)
        repo = self.word()
        targets = [f"api.github.internal/repos/{ORG}/{repo}", f"api.github.internal/repos/{ORG}/{repo}-docs"]
        habits = Habits(tools, targets, ["10.60.2."], "agent-runtime/1.8.2", (8, 19), True, r.uniform(3, 6), 5, 3_000)
        agent_id = f"agt_{r.getrandbits(48):012x}"
        return SimIdentity(f"agent:{name}", "ai_agent", f"ai_agent:{agent_id}", "kind:ai_agent", habits,
                           {"gen_ai.agent.id": agent_id, "gen_ai.agent.name": name},
                           (("service.name", "agent-runtime"), ("service.namespace", "ai")))

    def oauth_app(self, client_id: str | None = None, vendor_prefix: str | None = None) -> SimIdentity:
        r = self.rnd
        if client_id is None:  # an application (client) id is a GUID, as Entra ID gives them
            h = f"{r.getrandbits(128):032x}"
            client_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        routes = r.sample(["/v1/invoices", "/v1/contacts", "/v1/calendar/events", "/v1/files", "/v1/reports"], 2)
        habits = Habits(["token.issued"] + [f"GET {x}" for x in routes], ["graph.northwind.example"],
                        [vendor_prefix or self.public_prefix()], f"{self.word().title()}Connector/{r.randint(1, 9)}.{r.randint(0, 20)}",
                        (0, 24), False, r.uniform(1.0, 2.5), 3, 20_000, 0.005, country=r.choice(["US", "IE"]))
        return SimIdentity(f"oauth:{client_id[:8]}", "oauth_app", f"oauth_app:{client_id}", f"name:{client_id}",
                           habits, {"oauth.client.id": client_id}, (("service.name", "identity-provider"),))

    def mailbox(self) -> SimIdentity:
        r = self.rnd
        name = f"svc-{self.word()}"
        address = f"{name}@{CORP_DOMAIN}"
        habits = Habits(["message.received", "message.sent"], [CORP_DOMAIN], ["10.5.1."], "Microsoft Exchange",
                        (6, 20), True, r.uniform(2, 5), 1, 30_000, 0.0)
        return SimIdentity(f"mailbox:{name}", "mailbox", f"service_account:{address}", f"name:{name}", habits,
                           {"user.id": address}, (("service.name", "mail-gateway"),))

    def human(self) -> SimIdentity:
        r = self.rnd
        first, last = self.fake.first_name().lower(), self.fake.last_name().lower()
        address = f"{first}.{last}@{CORP_DOMAIN}"
        habits = Habits(["signin"], ["portal.northwind.example"], [r.choice(["10.7.1.", "10.7.2."])],
                        self.fake.chrome(), (8, 18), True, 0.4, 1, 1, 0.03, country="DE")
        return SimIdentity(f"human:{first}.{last}", "human", f"human:{address}", "human", habits,
                           {"user.id": address}, (("service.name", "identity-provider"),))

    def service(self, ns: str) -> SimIdentity:
        r = self.rnd
        name = f"{self.word()}-svc"
        routes = [f"GET /api/{self.word()}/{{id}}" for _ in range(r.randint(2, 4))] + ["POST /api/events"]
        peers = [f"{self.word()}.{ns}.svc.cluster.local" for _ in range(r.randint(1, 3))]
        habits = Habits(routes, peers, [f"10.244.{r.randrange(60, 120)}."], "Go-http-client/1.1", (0, 24), False,
                        r.uniform(8, 16), 3, 3_000, 0.01)
        return SimIdentity(f"svc:{ns}/{name}", "service", f"workload:{ns}/{name}", f"svcns:{ns}", habits, {},
                           (("service.name", name), ("service.namespace", ns)))


def build_fleet(identities: int, seed: int, wanted: dict[str, int] | None = None) -> list[SimIdentity]:
    """A deterministic fleet of about ``identities`` members, every archetype present.
    ``wanted``: how many members of an archetype the scenarios pick; a small fleet gets enough
    of them (a third of CI roles hold an IAM user's key instead, hence the half again)."""
    b = FleetBuilder(seed)
    r = b.rnd
    namespaces = [b.word() for _ in range(max(2, identities // 30))]
    repos = [b.word() for _ in range(max(2, identities // 10))]
    pools = [f"172.18.{r.randrange(0, 40)}."]
    projects = [f"{b.word()}-prod-{r.randrange(100, 999)}" for _ in range(2)]
    fleet: list[SimIdentity] = []
    counts = {a: max(1, round(identities * share)) for a, share in MIX.items()}
    counts["ci_role"] = max(counts["ci_role"], 4, -(-(wanted or {}).get("ci_role", 0) * 3 // 2))
    counts["api_key"] = max(counts["api_key"], 3)
    counts["k8s_sa"] = max(counts["k8s_sa"], 4)
    for i in range(counts["k8s_sa"]):
        fleet.append(b.k8s_sa(namespaces[i % len(namespaces)], b.word()))
    for i in range(counts["ci_role"]):
        fleet.append(b.ci_role(repos[i % len(repos)] if i < len(repos) else b.word(), pools[0]))
    for i in range(counts["rotation_role"]):
        fleet.append(b.rotation_role(f"secrets-rotation-{b.word()}"))
    for i in range(counts["gcp_sa"]):
        fleet.append(b.gcp_sa(projects[i % 2]))
    for _ in range(counts["api_key"]):
        fleet.append(b.api_key("partner-api"))
    for i in range(counts["ci_pipeline"]):
        fleet.append(b.ci_pipeline(repos[i % len(repos)], pools[0]))
    for _ in range(counts["ai_agent"]):
        fleet.append(b.ai_agent())
    for _ in range(counts["oauth_app"]):
        fleet.append(b.oauth_app())
    for _ in range(counts["mailbox"]):
        fleet.append(b.mailbox())
    for _ in range(counts["human"]):
        fleet.append(b.human())
    while len(fleet) < identities:
        fleet.append(b.service(namespaces[len(fleet) % len(namespaces)]))
    authenticate_as_fleets_do(fleet, b)
    return fleet


GITHUB_OIDC_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"


def authenticate_as_fleets_do(fleet: list[SimIdentity], b: FleetBuilder) -> None:
    """Give some members the other ways real fleets sign in, each named by the fields a real
    record carries (never by the name), so the bench exercises every kind rule with its
    look-alike beside it:

    - a CI role assumed through GitHub Actions' OIDC provider (``ci_job``), and a CI job holding
      an IAM user's long-lived access key instead (``api_key`` on the user and key; archetype
      ``iam_user_key``, since scenarios about a role's sessions do not apply to it);
    - a person who works in AWS through an IAM Identity Center session (``human``, though the
      record names a role);
    - a GCP pipeline outside Google Cloud acting as a Workload Identity Federation principal
      (``workload``);
    - an application reading users' mailboxes with their delegated permission (``oauth_app``,
      with the user beside it in the mailbox audit log).

    Runs after the fleet is built (it draws words last), so the rest of a seeded world is the
    same as before the shapes existed."""
    by_archetype: dict[str, list[SimIdentity]] = {}
    for ident in fleet:
        by_archetype.setdefault(ident.archetype, []).append(ident)
    people = [i.attrs["user.id"] for i in by_archetype.get("human", [])]
    for i, ident in enumerate(by_archetype.get("ci_role", [])):
        if i % 3 == 1:
            ident.shape = "github_oidc"
            ident.identity_id = f"ci_job:arn:aws:iam::{ACCOUNT}:role/{ident.attrs['role']}"
        elif i % 3 == 2:  # no role session at all: an archetype of its own
            ident.archetype = ident.shape = "iam_user_key"
            user, key = f"{ident.attrs['role'].removesuffix('-deploy')}-deployer", f"AKIA{b.rnd.getrandbits(64):016X}"
            ident.attrs = {"user_arn": f"arn:aws:iam::{ACCOUNT}:user/{user}", "access_key": key}
            ident.identity_id = f"api_key:arn:aws:iam::{ACCOUNT}:user/{user}/{key}"
            ident.habits.actions[0] = "sts.amazonaws.com/GetCallerIdentity"  # no role to assume
    for i, ident in enumerate(by_archetype.get("human", [])):
        if i % 2 == 1:
            ident.shape = "aws_sso"
            permission_set = b.rnd.choice(["ReadOnlyAccess", "PowerUserAccess", "Billing"])
            ident.habits.extra = {**ident.habits.extra,
                                  "role": f"AWSReservedSSO_{permission_set}_{b.rnd.getrandbits(64):016x}"}
            ident.habits.actions = ["signin", "ec2.amazonaws.com/DescribeInstances", "s3.amazonaws.com/ListBuckets",
                                    "cloudwatch.amazonaws.com/GetMetricData"]
    for i, ident in enumerate(by_archetype.get("gcp_sa", [])):
        if i % 2 == 1:
            ident.shape = "federated_ci"
            principal = (f"principal://iam.googleapis.com/projects/{b.rnd.randrange(10**11, 10**12)}/locations/global/"
                         f"workloadIdentityPools/github/subject/repo:{ORG}/{b.word()}:ref:refs/heads/main")
            ident.attrs = {"user.id": principal}
            ident.identity_id = f"workload:{principal}"
            ident.habits.user_agent = "google-github-actions/auth gcloud/467.0.0"
    for i, ident in enumerate(by_archetype.get("oauth_app", [])):
        if i % 3 == 1 and people:
            ident.shape = "mail_reader"
            ident.habits.actions = ["token.issued", "GET /v1.0/users/{user}/messages"]
            ident.habits.targets = ["graph.microsoft.com"]
            ident.habits.extra = {**ident.habits.extra, "for_users": [people[i % len(people)],
                                                                      people[(i + 1) % len(people)]]}
