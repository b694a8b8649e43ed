"""Which principal formats name a non-human identity, and the peer group each format implies.

Peer group (``Identity.group``), when the catalog gives none, is derived from the principal:
Kubernetes namespace (``k8s:<ns>``), GCP project (``gcp:<project>``), AWS account and role-name
stem (``aws:<acct>:<stem>``), SPIFFE trust domain and first path segment, CI repository owner
(``ci:<owner>``), and the name stem of ``svc-``/``sa-``/``bot-`` names (trailing numbers,
environments and hex ids removed). The stem rule is what lets a fleet of ``svc-billing-7``,
``svc-billing-8`` be judged together.
"""

from __future__ import annotations

import hashlib
import re

import re2

from ..model import CI_JOB, SERVICE_ACCOUNT, WORKLOAD

K8S_SERVICE_ACCOUNT = re.compile(r"^system:serviceaccount:([^:]+):([^:]+)$")
AWS_ROLE = re.compile(r"^arn:aws[\w-]*:iam::(\d+):role/(?:.*/)?([^/]+)$")
AWS_ASSUMED_ROLE = re.compile(r"^arn:aws[\w-]*:sts::(\d+):assumed-role/([^/]+)/.+$")
AWS_USER = re.compile(r"^arn:aws[\w-]*:iam::(\d+):user/(?:.*/)?([^/]+)$")
GCP_SERVICE_ACCOUNT = re.compile(r"^([^@]+)@([^.]+)\.iam\.gserviceaccount\.com$")
SPIFFE = re.compile(r"^spiffe://([^/]+)(/[^/]*)?")
GITHUB_OIDC = re.compile(r"^repo:([^/:]+)/([^:]+)(:.*)?$")
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
    m = AWS_ASSUMED_ROLE.match(value)
    if m:
        acct, role = m.group(1), m.group(2)
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


def repo_owner(url: str) -> str | None:
    """``https://github.com/acme/api`` -> ``acme``; ``acme/api`` -> ``acme``."""
    path = url.split("://", 1)[-1]
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2:
        return parts[1] if "." in parts[0] else parts[0]
    return None
