"""Google Cloud audit logs: a Cloud Logging ``LogEntry`` whose ``protoPayload`` is an ``AuditLog``, as
Pub/Sub delivers it (the Collector's Google Pub/Sub receiver), as a sink exports it to Cloud
Storage, or as ``gcloud logging read --format=json`` prints it.

Who: ``protoPayload.authenticationInfo.principalEmail`` (``...iam.gserviceaccount.com`` is a
service account), else ``principalSubject`` (a federated principal). When a service account is
impersonated, the service account acts and whoever impersonated it is a related identity: on the
calls made with the borrowed token (``serviceAccountDelegationInfo`` names the callers) and on the
mint itself (``iamcredentials`` ``GenerateAccessToken``..., whose ``request.name`` or
``metadata.identityDelegationChain`` names the account), so a new caller borrowing a deploy account
is read against that account's own history. The credential is the service account
key (``serviceAccountKeyName``) when one was used. GKE's Kubernetes audit entries (``k8s.io``) are
read as Kubernetes.
"""

from __future__ import annotations

from .record import Issuance, Mapped, Skipped, VendorRecord, present

NAME = "gcp_audit"
AUTH_METHODS = ("GenerateAccessToken", "GenerateIdToken", "SignBlob", "SignJwt")
IAM_SERVICES = ("iam.googleapis.com", "cloudresourcemanager.googleapis.com", "iamcredentials.googleapis.com")
AUTHZ_CODES = {7: "PERMISSION_DENIED", 16: "UNAUTHENTICATED"}
MAX_EMAIL = 320  # an address longer than email allows names no service account


def map_record(r: VendorRecord) -> Mapped | Skipped:
    p = r.inner(r.get("protoPayload") or {})
    service = p.text("serviceName") or ""
    if service == "k8s.io":
        from .kubernetes import map_gke

        return map_gke(r)
    when = r.time("timestamp", "receiveTimestamp")
    principal = p.text("authenticationInfo.principalEmail", "authenticationInfo.principalSubject")
    if not principal:
        return Skipped(NAME, f"{p.text('methodName') or 'entry'} without principalEmail", when)
    method = p.text("methodName") or ""
    short = method.rsplit(".", 1)[-1]
    code = p.get("status.code") or 0
    if not isinstance(code, int):
        code = int(code) if str(code).isdigit() else 1
    attrs = {
        "event.category": "authentication" if short in AUTH_METHODS else ("iam" if service in IAM_SERVICES else "api"),
        "event.action": f"{service}/{method}" if service else method,
        "user.id": principal,
        "source.address": p.text("requestMetadata.callerIp"),
        "user_agent.original": p.text("requestMetadata.callerSuppliedUserAgent"),
        "cloud.resource_id": p.text("resourceName"),
        "event.outcome": "failure" if code else "success",
        "error.type": AUTHZ_CODES.get(code, str(code)) if code else None,
        "nhi.credential.id": p.text("authenticationInfo.serviceAccountKeyName"),
    }
    related = []
    for link in p.get("authenticationInfo.serviceAccountDelegationInfo") or ():
        if isinstance(link, dict):
            lender = p.inner(link).text("firstPartyPrincipal.principalEmail", "principalSubject")
            if lender:
                related.append(lender)
    if service == "iamcredentials.googleapis.com" and short in AUTH_METHODS:
        borrowed = _impersonated(p)
        if borrowed and borrowed != principal:
            attrs["user.id"] = borrowed
            related.append(principal)
    issued = None
    if short in ("CreateServiceAccountKey",):
        key = p.text("response.name")
        if key:
            attrs["nhi.credential.created"] = key
            issued = Issuance(key, p.text("request.name", "resourceName") or "", principal, attrs["source.address"])
    return Mapped(NAME, present(attrs), when,
                  record_id=r.text("insertId"), related=tuple(related), issued=issued)


def _impersonated(p: VendorRecord) -> str | None:
    """The service account a token mint is for: the request's ``name``, else the delegation
    chain's last link (``projects/-/serviceAccounts/<email>``). Only an email form names an
    identity; a bare unique id leaves the caller as the actor."""
    chain = p.get("metadata.identityDelegationChain")
    last = chain[-1] if isinstance(chain, list) and chain and isinstance(chain[-1], str) else None
    for name in (p.text("request.name"), last):
        account = (name or "").rpartition("/serviceAccounts/")[2]
        if len(account) <= MAX_EMAIL and "@" in account and account.endswith(".iam.gserviceaccount.com"):
            return account
    return None

