"""Which principal formats name a non-human identity, and the peer group each format implies.

Peer group (``Identity.group``), when the catalog gives none, is derived from the principal:
Kubernetes namespace (``k8s:<ns>``), GCP project (``gcp:<project>``), AWS account and role-name
stem (``aws:<acct>:<stem>``), SPIFFE trust domain and first path segment, CI repository owner
(``ci:<owner>``), and the name stem of ``svc-``/``sa-``/``bot-`` names (trailing numbers,
environments and hex ids removed). The stem rule is what lets a fleet of ``svc-billing-7``,
``svc-billing-8`` be judged together.
"""

from __future__ import annotations

import functools
import hashlib
import re

import re2

from ..model import API_KEY, CI_JOB, HUMAN, SERVICE_ACCOUNT, WORKLOAD

K8S_SERVICE_ACCOUNT = re.compile(r"^system:serviceaccount:([^:]+):([^:]+)$")
# A node's kubelet, and the control plane's own components: machines, whose stolen credentials
# (a kubelet's client certificate, a component's token) act without anyone at a keyboard.
K8S_NODE = re.compile(r"^system:node:([^:]+)$")
K8S_CONTROL_PLANE = frozenset({"system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy",
                               "system:apiserver", "system:volume-scheduler", "system:kube-aggregator",
                               "system:serviceaccount-issuer-discovery"})
# Workload Identity Federation: an external workload (a CI job, another cloud's VM) acting on
# Google Cloud as a pool's principal or member of a principal set.
GCP_FEDERATED = re.compile(r"^principal(?:Set)?://iam\.googleapis\.com/projects/[^/]+/locations/[^/]+/"
                           r"workloadIdentityPools/([^/]+)/")
AWS_ROLE = re.compile(r"^arn:aws[\w-]*:iam::(\d+):role/(?:.*/)?([^/]+)$")
AWS_ASSUMED_ROLE = re.compile(r"^arn:aws[\w-]*:sts::(\d+):assumed-role/([^/]+)/.+$")
AWS_USER = re.compile(r"^arn:aws[\w-]*:iam::(\d+):user/(?:.*/)?([^/]+)$")
GCP_SERVICE_ACCOUNT = re.compile(r"^([^@]+)@([^.]+)\.iam\.gserviceaccount\.com$")
SPIFFE = re.compile(r"^spiffe://([^/]+)(/[^/]*)?")
GITHUB_OIDC = re.compile(r"^repo:([^/:]+)/([^:]+)(:.*)?$")
# A role session named by an email address is a person's: SAML and OIDC identity providers (and
# IAM Identity Center) name the session after who signed in; machines' sessions carry an
# instance id, a function name, a run id.
EMAIL_SESSION = re.compile(r"^[^@/\s]{1,128}@[^@/\s]{1,253}\.[A-Za-z]{2,24}$")
NHI_NAME = re.compile(r"^(svc|sa|bot)[-_]|\[bot\]$", re.IGNORECASE)
# RE2: a trailing repetition anchored at the end is quadratic for backtracking engines.
_STEM_TAIL = re2.compile(
    r"(?i)([-_.](\d+|[0-9a-f]{6,}|prod|production|staging|stage|dev|test|qa|blue|green|canary|v\d+))+$")
MAX_PRINCIPAL = 512


def bounded_principal(value: str) -> str:
    """A principal of reasonable length as it is; a longer one (nobody's real name, somebody's
    attempt to cost us time) as its start and a digest of the whole, so that it stays distinct."""
    if len(value) <= MAX_PRINCIPAL:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{value[:MAX_PRINCIPAL - 24]}...sha256:{digest}"


def name_stem(name: str) -> str:
    """``svc-billing-7`` and ``svc-billing-prod`` share the stem ``svc-billing``."""
    stem = _STEM_TAIL.sub("", name[:MAX_PRINCIPAL])
    return stem or name


def classify_principal(value: str) -> tuple[str, str, str | None] | None:
    """Recognise a non-human principal by its format: (kind, canonical principal, group) or None."""
    m = K8S_SERVICE_ACCOUNT.match(value)
    if m:
        return WORKLOAD, value, f"k8s:{m.group(1)}"
    if K8S_NODE.match(value):
        return WORKLOAD, value, "k8s:nodes"
    if value in K8S_CONTROL_PLANE:
        return WORKLOAD, value, "k8s:control-plane"
    m = GCP_FEDERATED.match(value)
    if m:
        return WORKLOAD, value, f"gcp-wif:{m.group(1)}"
    m = AWS_ASSUMED_ROLE.match(value)
    if m:
        acct, role = m.group(1), m.group(2)
        session = value.rsplit("/", 1)[-1]
        if is_person_session(role, session):
            return HUMAN, session, None
        # The session name is per-use (an instance id, a CI run id): not part of the identity.
        return WORKLOAD, f"arn:aws:iam::{acct}:role/{role}", f"aws:{acct}:{name_stem(role)}"
    m = AWS_ROLE.match(value)
    if m:
        acct, role = m.group(1), m.group(2)
        return WORKLOAD, f"arn:aws:iam::{acct}:role/{role}", f"aws:{acct}:{name_stem(role)}"
    m = GCP_SERVICE_ACCOUNT.match(value)
    if m:
        return SERVICE_ACCOUNT, value, f"gcp:{m.group(2)}"
    m = SPIFFE.match(value)
    if m:
        return WORKLOAD, value, f"spiffe:{m.group(1)}{m.group(2) or ''}"
    m = GITHUB_OIDC.match(value)
    if m:
        return CI_JOB, value, f"ci:{m.group(1)}"
    m = AWS_USER.match(value)
    if m:
        user = m.group(2)
        if NHI_NAME.search(user):
            return SERVICE_ACCOUNT, value, f"aws:{m.group(1)}:{name_stem(user)}"
        return None
    if NHI_NAME.search(value):
        local = value.split("@", 1)[0]
        return SERVICE_ACCOUNT, value, f"name:{name_stem(local.removesuffix('[bot]'))}"
    return None


AWS_ROOT = re.compile(r"^arn:aws[\w-]*:iam::(\d+):root$")
# IAM Identity Center gives each person a role per permission set; the session is the person.
AWS_SSO_ROLE = "AWSReservedSSO_"
GITHUB_ACTIONS_PROVIDER = "token.actions.githubusercontent.com"


def is_person_session(role: str, session: str) -> bool:
    """An AWS role session that is a person signed in: IAM Identity Center's ``AWSReservedSSO_*``
    roles, or a session named by an email address (a federated sign-in)."""
    return role.startswith(AWS_SSO_ROLE) or ("@" in session and EMAIL_SESSION.match(session) is not None)


def classify_aws(arn: str, principal_type: str | None, access_key: str | None, from_console: bool,
                 web_identity_provider: str | None) -> tuple[str, str, str | None] | None:
    """Who acted on an AWS record, from what the record says about the principal and its
    credential before the principal's name: (kind, principal, group), or None to fall back to
    ``classify_principal``.

    - ``AWSReservedSSO_*`` role sessions are the person signed in through IAM Identity Center,
      and so is a role session named by an email address (SAML or OIDC federation); root is a
      person.
    - An IAM user calling through an access key, not from the console, is a long-lived key,
      whatever its name: ``api_key`` keyed on the user and the key (``AKIA…``) it used; a
      temporary key (``ASIA…``, from ``GetSessionToken``) still acts for the user's long-lived
      key, so it is keyed on the user. The same user at the console is a person.
    - A role session opened through GitHub Actions' OIDC provider is a CI job.

    Per record on the busiest source, so the decision is cached on what decides it and never on
    what is new on every record (a role session's name, a temporary key)."""
    if ":assumed-role/" in arn:
        head, _, session = arn.rpartition("/")
        if is_person_session(head.rpartition("/")[2], session):
            return HUMAN, session, None
        github = bool(web_identity_provider) and GITHUB_ACTIONS_PROVIDER in web_identity_provider
        return _role_session(head) if github else None
    long_lived = bool(access_key) and access_key.startswith("AKIA")
    decided = _principal(arn, principal_type, bool(access_key), from_console)
    if decided is not None and long_lived and decided[0] == API_KEY:
        return API_KEY, f"{decided[1]}/{access_key}", decided[2]
    return decided


AWS_ROLE_SESSION_HEAD = re.compile(r"^arn:aws[\w-]*:sts::(\d+):assumed-role/([^/]+)$")


# Bounded in entries, least recent out, and in size: the caller bounds every argument
# (identity/rules._aws_value).
@functools.lru_cache(maxsize=16_384)
def _role_session(head: str) -> tuple[str, str, str | None] | None:
    """A role session opened through GitHub Actions' OIDC provider, by its role
    (``arn:…:assumed-role/<role>``): the CI job."""
    m = AWS_ROLE_SESSION_HEAD.match(head)
    if m is None:
        return None
    acct, role = m.group(1), m.group(2)
    return CI_JOB, f"arn:aws:iam::{acct}:role/{role}", f"ci:aws:{acct}"


@functools.lru_cache(maxsize=16_384)
def _principal(arn: str, principal_type: str | None, has_key: bool, from_console: bool
               ) -> tuple[str, str, str | None] | None:
    """Root and IAM users: a person at the console, a long-lived key through the API."""
    if principal_type == "Root" or AWS_ROOT.match(arn):
        return HUMAN, arn, None
    m = AWS_USER.match(arn)
    if m is None:
        return None
    if from_console:
        return HUMAN, arn, None
    if not has_key:
        return None  # the record does not say how it signed in: the name decides
    return API_KEY, arn, f"aws:{m.group(1)}:iam-user-keys"


def repo_owner(url: str) -> str | None:
    """``https://github.com/acme/api`` -> ``acme``; ``acme/api`` -> ``acme``."""
    path = url.split("://", 1)[-1]
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2:
        return parts[1] if "." in parts[0] else parts[0]
    return None
