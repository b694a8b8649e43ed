"""Kubernetes API server audit events (``audit.k8s.io/v1`` ``Event``), as the API server writes them
to a file (read by the Collector's filelog receiver), and in the managed services' envelopes:

- EKS: CloudWatch Logs (``/aws/eks/<cluster>/cluster``), each event's ``message`` the audit JSON;
  exports (``{"events": [...]}``) and subscription payloads (``{"logEvents": [...]}``) are
  unwrapped by the file reader, a single ``{"message": "..."}`` here;
- GKE: Cloud Logging ``LogEntry`` with ``protoPayload.serviceName`` ``k8s.io`` (an AuditLog);
- AKS: diagnostic settings ``{"category": "kube-audit", "properties": {"log": "..."}}``.

Who: ``user.username`` (``system:serviceaccount:<ns>:<name>`` is a workload); the credential is
``authentication.kubernetes.io/credential-id`` and the pod a bound token was issued to is in
``user.extra``. Only ``stage: ResponseComplete`` is an event of ours (the other stages describe the
same request again), except for sessions into a pod (``exec``, ``attach``, ``portforward``),
observed at ``ResponseStarted``, when they open, and not again when they close.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .record import Mapped, Skipped, VendorRecord, parse_json_text, present, text_of

NAME = "kubernetes"
RBAC = frozenset({"roles", "rolebindings", "clusterroles", "clusterrolebindings", "serviceaccounts/token",
                  "certificatesigningrequests", "tokenrequests"})
# A session into a pod (kubectl exec, attach, port-forward) is recorded when it opens
# (ResponseStarted) and again when it closes, maybe hours later: it is observed when it opens, and
# at its close only when its opening was not seen (an audit policy that omits ResponseStarted).
CONNECT = frozenset({"exec", "attach", "portforward"})


class OpenedSessions:
    """The audit ids of sessions into pods observed when they opened: bounded, oldest forgotten
    first (a session still open after 4,096 newer ones is observed again when it closes)."""

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_of(self, audit_id: str | None, stage: str) -> bool:
        """Whether this stage of the session is the one to observe."""
        if stage == "ResponseStarted":
            if audit_id:
                with self._lock:
                    self._ids[audit_id] = None
                    if len(self._ids) > self.capacity:
                        self._ids.popitem(last=False)
            return True
        if stage != "ResponseComplete":
            return False
        if not audit_id:
            return True
        with self._lock:
            opened = audit_id in self._ids
            if opened:
                del self._ids[audit_id]
        return not opened


OPENED = OpenedSessions()
EXTRA_CREDENTIAL = "authentication.kubernetes.io/credential-id"
EXTRA_POD = "authentication.kubernetes.io/pod-name"
EXTRA_NODE = "authentication.kubernetes.io/node-name"


def is_audit_event(data: dict) -> bool:
    """An audit event by what it is (``kind: Event`` of ``audit.k8s.io``), for re-exports that
    dropped its ``auditID``."""
    api = data.get("apiVersion")
    return data.get("kind") == "Event" and isinstance(api, str) and api.startswith("audit.k8s.io/")


def unwrap(data: dict) -> dict | None:
    """The audit event inside an EKS, AKS or plain envelope; None when there is none."""
    if "auditID" in data or "verb" in data or is_audit_event(data):
        return data
    for holder in (data.get("properties"), data):  # AKS diagnostic settings, EKS CloudWatch
        if isinstance(holder, dict):
            for key in ("log", "message"):
                inner = holder.get(key)
                if isinstance(inner, str) and inner[:1] == "{":
                    inner = parse_json_text(inner)
                if isinstance(inner, dict) and ("auditID" in inner or "verb" in inner):
                    return inner
    return None


def _first(value):
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def map_record(r: VendorRecord) -> Mapped | Skipped:
    """One audit event. The API server's field names never change case, and audit logs are the
    busiest source after CloudTrail: read with plain dictionary look-ups."""
    event = unwrap(r.data)
    if event is None:
        return Skipped(NAME, "no Kubernetes audit event inside")
    e = r.inner(event)
    when = e.time("stageTimestamp", "requestReceivedTimestamp", "timestamp")
    stage = text_of(event.get("stage")) or "ResponseComplete"
    if text_of(_dict(event.get("objectRef")).get("subresource")) in CONNECT:
        if not OPENED.first_of(text_of(event.get("auditID")), stage):
            return Skipped(NAME, f"stage {stage}: the session into the pod was observed when it opened", when)
    elif stage != "ResponseComplete":
        return Skipped(NAME, f"stage {stage}: only ResponseComplete is observed", when)
    user_info = _dict(event.get("user"))
    user = text_of(user_info.get("username"))
    if not user:
        return Skipped(NAME, "no user.username", when)
    ref = _dict(event.get("objectRef"))
    resource = text_of(ref.get("resource")) or ""
    sub = text_of(ref.get("subresource"))
    what = f"{resource}/{sub}" if sub else resource
    verb = text_of(event.get("verb")) or ""
    code = _dict(event.get("responseStatus")).get("code")
    namespace, name = text_of(ref.get("namespace")), text_of(ref.get("name"))
    uri = text_of(event.get("requestURI"))
    target = "/".join(x for x in (namespace, what, name) if x) or uri
    extra = _dict(user_info.get("extra"))
    status = int(code) if isinstance(code, int) and not isinstance(code, bool) else (
        int(code) if isinstance(code, str) and code.isdigit() else None)
    attrs = {
        "event.category": "iam" if what in RBAC or resource in RBAC else "api",
        "event.action": f"{verb} {what}".strip(),
        "user.id": user,
        "source.address": text_of(_first(event.get("sourceIPs"))),
        "user_agent.original": text_of(event.get("userAgent")),
        "cloud.resource_id": target,
        "url.path": uri,
        "http.response.status_code": status,
        "event.outcome": "failure" if status is not None and status >= 400 else "success",
        "nhi.credential.id": text_of(_first(extra.get(EXTRA_CREDENTIAL))),
        "k8s.pod.name": text_of(_first(extra.get(EXTRA_POD))),
        "k8s.node.name": text_of(_first(extra.get(EXTRA_NODE))),
    }
    if verb == "create" and what == "serviceaccounts/token":
        attrs["event.action"] = "token.issued"
        attrs["nhi.target.identity"] = f"workload:system:serviceaccount:{namespace}:{name}"
    return Mapped(NAME, present(attrs), when,
                  record_id=text_of(event.get("auditID")))


def map_gke(r: VendorRecord) -> Mapped | Skipped:
    """A GKE audit entry: the AuditLog payload of a Cloud Logging LogEntry about ``k8s.io``."""
    p = r.inner(r.get("protoPayload") or {})
    when = r.time("timestamp", "receiveTimestamp")
    user = p.text("authenticationInfo.principalEmail")
    if not user:
        return Skipped(NAME, "GKE audit entry without principalEmail", when)
    method = p.text("methodName") or ""  # io.k8s.core.v1.secrets.list
    parts = method.split(".")
    verb = parts[-1] if parts else method
    resource = parts[-2] if len(parts) >= 2 else ""
    code = p.get("status.code") or 0
    attrs = {
        "event.category": "iam" if resource in RBAC else "api",
        "event.action": f"{verb} {resource}".strip(),
        "user.id": user,
        "source.address": p.text("requestMetadata.callerIp"),
        "user_agent.original": p.text("requestMetadata.callerSuppliedUserAgent"),
        "cloud.resource_id": p.text("resourceName"),
        "event.outcome": "failure" if code else "success",
        "error.type": "PERMISSION_DENIED" if code == 7 else (str(code) if code else None),
    }
    return Mapped(NAME, present(attrs), when,
                  record_id=r.text("insertId"))
