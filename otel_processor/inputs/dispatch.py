"""Which profile reads a vendor record: decided by a few discriminating fields, never by trying
every profile in turn, so the cost of recognising a record does not grow with the number of
sources.

Each vendor has fields no other vendor's records carry at the top level (CloudTrail's
``eventSource``/``eventName``, Kubernetes' ``auditID``, Cloud Logging's ``protoPayload``, the
unified audit log's ``Workload``, GitHub's ``_document_id``), and Azure records name their kind in
``category`` (diagnostic settings, and the body the Collector's ``azure`` encoding leaves) or
``Type`` (Log Analytics / Sentinel table exports). ``profile_of`` looks those up, a handful of
dictionary look-ups per record, and returns the one profile to run.
"""

from __future__ import annotations

from collections.abc import Callable

from . import azure, cloudtrail, entra, gcp, github, kubernetes, m365
from .record import Mapped, Skipped, Unusable, VendorRecord

MapFunction = Callable[[VendorRecord], "Mapped | Skipped"]

# Profile name -> the function mapping one record.
PROFILES: dict[str, MapFunction] = {
    cloudtrail.NAME: cloudtrail.map_record,
    entra.SIGNIN: entra.map_signin,
    entra.AUDIT: entra.map_audit,
    m365.NAME: m365.map_record,
    github.NAME: github.map_record,
    kubernetes.NAME: kubernetes.map_record,
    gcp.NAME: gcp.map_record,
    azure.ACTIVITY: azure.map_activity,
    azure.KEYVAULT: azure.map_keyvault,
    azure.GRAPH: azure.map_graph,
}

# Sources whose exports change the case of field names (Log Analytics tables of Graph records).
FOLD_CASE = frozenset({entra.SIGNIN, entra.AUDIT, m365.NAME, azure.ACTIVITY, azure.KEYVAULT, azure.GRAPH})

# Azure ``category`` (diagnostic settings) and Log Analytics ``Type`` values, lower case.
_AZURE_KINDS = {
    **{name: entra.SIGNIN for name in entra.SIGNIN_CATEGORIES},
    "auditlogs": entra.AUDIT,
    "kube-audit": kubernetes.NAME,
    "kube-audit-admin": kubernetes.NAME,
    "officeactivity": m365.NAME,
    # the Activity Log's categories, and its table
    **{name: azure.ACTIVITY for name in ("administrative", "security", "policy", "azureactivity")},
    "auditevent": azure.KEYVAULT,
    "azkvauditlogs": azure.KEYVAULT,
    "microsoftgraphactivitylogs": azure.GRAPH,
}


def profile_of(data: dict) -> str | None:
    """The profile for a record, or None when it is none of ours."""
    kind = data.get("category")
    if kind is None:
        kind = data.get("Type", data.get("Category"))
    if isinstance(kind, str):
        found = _AZURE_KINDS.get(kind.lower())
        if found is not None:
            return found
    if "eventSource" in data and "eventName" in data:
        return cloudtrail.NAME
    if "protoPayload" in data:
        return gcp.NAME
    if "auditID" in data or kubernetes.is_audit_event(data):
        return kubernetes.NAME
    if "OfficeWorkload" in data or ("Workload" in data and "Operation" in data):
        return m365.NAME
    # GitHub's fields are common words: an application's own log body may have "action" and
    # "actor" too, so one of the audit log's own fields must be there as well.
    if "action" in data and ("_document_id" in data or ("actor" in data and (
            "actor_id" in data or "org" in data or "business" in data or "repo" in data))):
        return github.NAME
    if "activityDisplayName" in data and "initiatedBy" in data:
        return entra.AUDIT  # Microsoft Graph directoryAudit
    if "createdDateTime" in data and "appId" in data:
        return entra.SIGNIN  # Microsoft Graph signIn
    if "InitiatedBy" in data and "TargetResources" in data:
        return entra.AUDIT  # Log Analytics AuditLogs exported without its Type column
    if "ResultType" in data and ("AppId" in data or "ServicePrincipalId" in data):
        return entra.SIGNIN  # a Log Analytics sign-in table exported without its Type column
    message = data.get("message")
    if isinstance(message, str) and message[:1] == "{" and '"auditID"' in message[:4096]:
        return kubernetes.NAME  # EKS through CloudWatch Logs: the audit event as text
    # SIEM re-exports that change the case of the unified audit log's keys ("workload",
    # "operation"): checked last, on records nothing else claimed.
    keys = {k.lower() for k in data if isinstance(k, str)}
    if "officeworkload" in keys or ("workload" in keys and "operation" in keys and "creationtime" in keys):
        return m365.NAME
    return None


def read_vendor(data: dict, profile: str | None = None, fallback_ns: int | None = None) -> Mapped | Skipped | None:
    """One vendor record mapped by its profile (``profile`` forces one); None when no profile
    claims it. Raises Unusable when the profile cannot read it (no time, a time that is not one)."""
    name = profile or profile_of(data)
    if name is None:
        return None
    return map_with(name, data, fallback_ns)


def map_with(name: str, data: dict, fallback_ns: int | None = None) -> Mapped | Skipped:
    """``data`` read by the profile ``name`` (raises Unusable as the profile does)."""
    return PROFILES[name](VendorRecord(data, fallback_ns, name in FOLD_CASE))


__all__ = ["PROFILES", "FOLD_CASE", "map_with", "profile_of", "read_vendor", "Unusable"]
