"""Microsoft Entra ID sign-in and audit logs.

Shapes: Azure diagnostic settings through Event Hub (``{"time", "category": "SignInLogs",
"properties": {...the Graph record...}}``, which the Collector's ``azure`` encoding leaves as the
body), Microsoft Graph (``signIns`` / ``directoryAudits``), and Log Analytics / Sentinel table
exports (``SigninLogs``, ``AADServicePrincipalSignInLogs``, ``AADManagedIdentitySignInLogs``,
``AADNonInteractiveUserSignInLogs``, ``AuditLogs``: PascalCase columns, JSON text in dynamic ones).

Sign-ins: a service principal is its app (``oauth_app`` by ``appId``), a managed identity a
``workload``, a user ``user.id``; the credential key id is the credential. Audit: the initiator
(``initiatedBy.user`` or ``.app``) acted; consent to an application, credentials added to an
application or service principal and app or directory roles assigned become
``oauth.consent.granted``, ``credential.created`` and ``role.assigned`` about the target app, named
by its ``appId`` (from ``TargetId.ServicePrincipalNames``, else from the object id -> appId map
learnt from sign-ins, ``AppIds``).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

from ..model import OAUTH_APP, WORKLOAD
from .record import IdentityHint, Issuance, Mapped, Skipped, VendorRecord, present, time_ns

SIGNIN = "entra_signin"
AUDIT = "entra_audit"
SIGNIN_CATEGORIES = {"signinlogs": "user", "noninteractiveusersigninlogs": "user",
                     "aadnoninteractiveusersigninlogs": "user", "serviceprincipalsigninlogs": "service_principal",
                     "aadserviceprincipalsigninlogs": "service_principal",
                     "managedidentitysigninlogs": "managed_identity",
                     "aadmanagedidentitysigninlogs": "managed_identity"}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class AppIds:
    """Service principal object id -> appId, learnt from sign-ins (bounded). A consent record
    often names the app only by its object id; sign-ins carry both."""

    def __init__(self, capacity: int = 50_000):
        self.capacity = capacity
        self._map: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def learn(self, object_id: str | None, app_id: str | None) -> None:
        if not object_id or not app_id or object_id == app_id:
            return
        with self._lock:
            self._map[object_id.lower()] = app_id
            self._map.move_to_end(object_id.lower())
            if len(self._map) > self.capacity:
                self._map.popitem(last=False)

    def app_of(self, object_id: str | None) -> str | None:
        return self._map.get(object_id.lower()) if object_id else None


APP_IDS = AppIds()


def _body(r: VendorRecord) -> VendorRecord:
    """The Graph record: inside ``properties`` for diagnostic settings, the row itself otherwise."""
    inner = r.get("properties")
    return r.inner(inner) if isinstance(inner, dict) else r


def _when(r: VendorRecord, b: VendorRecord, field: str) -> int:
    """The Graph record's own time, else the table's or the envelope's (``time``)."""
    value = b.get(field, "TimeGenerated", "TimeGenerated [UTC]") or r.get("time", "timeStamp")
    if value is None and r.fallback_ns:
        return r.fallback_ns
    return time_ns(value, f"{field} (or TimeGenerated, time)")


def _caller_ip(r: VendorRecord) -> str | None:
    """The envelope's caller address: ``callerIpAddress``, or where the Collector's azure
    encoding puts it (``network.peer.address``, a literal key)."""
    return r.text("callerIpAddress") or (str(r.data["network.peer.address"])
                                          if r.data.get("network.peer.address") else None)


def _outcome(code) -> tuple[str, str | None]:
    text = str(code if code is not None else "0").strip()
    if text in ("0", "", "success", "Success"):
        return "success", None
    return "failure", f"AADSTS{text}" if text.isdigit() else text


def _kind_from_graph(b: VendorRecord) -> str:
    """A Graph ``signIn`` (beta) says its kind in ``signInEventTypes``; v1.0 records only by
    which fields are filled."""
    types = b.get("signInEventTypes") or ()
    types = [types] if isinstance(types, str) else types
    if "managedIdentity" in types:
        return "managed_identity"
    if "servicePrincipal" in types:
        return "service_principal"
    if b.text("servicePrincipalId") and not b.text("userPrincipalName", "userId"):
        return "service_principal"
    return "user"


def map_signin(r: VendorRecord) -> Mapped | Skipped:
    category = (r.text("category", "Type") or "").lower()
    kind = SIGNIN_CATEGORIES.get(category)
    b = _body(r)
    when = _when(r, b, "createdDateTime")
    app_id = b.text("appId")
    sp_object = b.text("servicePrincipalId")
    if kind is None:
        kind = _kind_from_graph(b)
    outcome, error = _outcome(b.get("status.errorCode", "ResultType", "resultType") or r.get("resultType")
                              or r.data.get("result.type"))
    attrs = {
        "event.category": "authentication",
        "event.action": "token.issued" if kind != "user" else "signin",
        "event.outcome": outcome,
        "error.type": error,
        "source.address": b.text("ipAddress", "IPAddress") or _caller_ip(r),
        "user_agent.original": b.text("userAgent"),
        "geo.country.iso_code": b.text("location.countryOrRegion", "LocationDetails.countryOrRegion")
        or (r.text("location") if kind == "user" else None),
        "cloud.resource_id": b.text("resourceDisplayName", "resourceId", "ResourceIdentity"),
        "nhi.credential.id": b.text("servicePrincipalCredentialKeyId", "servicePrincipalCredentialThumbprint",
                                    "federatedCredentialId"),
        "entra.app_id": app_id,
    }
    identity = None
    if kind == "service_principal":
        if not app_id:
            return Skipped(SIGNIN, "service principal sign-in without appId", when)
        APP_IDS.learn(sp_object, app_id)
        attrs["oauth.client.id"] = app_id
        if sp_object and sp_object.lower() != app_id.lower():
            attrs["nhi.identity.alias"] = sp_object  # a grant record may name the app by it
    elif kind == "managed_identity":
        principal = app_id or sp_object or b.text("servicePrincipalName")
        if not principal:
            return Skipped(SIGNIN, "managed identity sign-in without an id", when)
        APP_IDS.learn(sp_object, app_id)
        identity = IdentityHint(WORKLOAD, f"entra-mi:{principal}", "entra.managed_identity",
                                group="entra:managed-identities")
        attrs["user.name"] = b.text("servicePrincipalName")
    else:
        user = b.text("userPrincipalName", "userId", "UserPrincipalName")
        if not user:
            return Skipped(SIGNIN, "user sign-in without userPrincipalName", when)
        attrs["user.id"] = user
    return Mapped(SIGNIN, present(attrs), when, identity, record_id=b.text("id", "Id") or r.text("correlationId"))


# -- audit ---------------------------------------------------------------------------------------
_CONSENT = ("consent to application",)
_CREDENTIAL = ("add service principal credentials", "update application - certificates and secrets management",
               "update application – certificates and secrets management")
_ROLE = ("add app role assignment to service principal", "add app role assignment grant to user",
         "add member to role", "add eligible member to role", "add delegated permission grant",
         "add owner to application", "add owner to service principal")


def _modified(target: dict, name: str) -> str | None:
    for prop in target.get("modifiedProperties") or target.get("ModifiedProperties") or ():
        if isinstance(prop, dict) and str(prop.get("displayName", prop.get("DisplayName", ""))).lower() == name.lower():
            value = prop.get("newValue", prop.get("NewValue"))
            return None if value in (None, "", "[]", '""') else str(value)
    return None


def _target_app(targets: list) -> tuple[str | None, dict | None]:
    """The appId of the application or service principal a change is about."""
    for target in targets:
        if not isinstance(target, dict):
            continue
        kind = str(target.get("type", target.get("Type", ""))).lower()
        if kind not in ("serviceprincipal", "application"):
            continue
        names = _modified(target, "TargetId.ServicePrincipalNames") or _modified(target, "AppId")
        if names:
            found = _GUID.search(names)
            if found:
                return found.group(0), target
        object_id = target.get("id", target.get("Id"))
        app_id = APP_IDS.app_of(object_id)
        return (app_id or (str(object_id) if object_id else None)), target
    return None, None


def _scopes(target: dict | None) -> str | None:
    if target is None:
        return None
    text = (_modified(target, "ConsentAction.Permissions") or _modified(target, "AppRole.Value")
            or _modified(target, "DelegatedPermissionGrant.Scope") or "")
    found = re.findall(r"Scope:\s*([^,\]\"]+)", text)
    scopes = " ".join(s.strip() for s in found) if found else text.strip('"[] ')
    return scopes or None


def map_audit(r: VendorRecord) -> Mapped | Skipped:
    b = _body(r)
    when = _when(r, b, "activityDateTime")
    targets = b.get("targetResources", "TargetResources") or []
    return _audit(AUDIT, when, (b.text("activityDisplayName", "OperationName") or r.text("operationName") or ""),
                  b.text("initiatedBy.user.userPrincipalName", "initiatedBy.user.id"),
                  b.text("initiatedBy.app.appId") or b.text("initiatedBy.app.displayName",
                                                            "initiatedBy.app.servicePrincipalName"),
                  targets if isinstance(targets, list) else [targets],
                  (b.text("result", "Result") or "success").lower() in ("success", ""),
                  b.text("initiatedBy.user.ipAddress", "initiatedBy.app.ipAddress") or _caller_ip(r),
                  b.text("id", "Id") or b.text("correlationId"))


def map_audit_like_m365(r: VendorRecord) -> Mapped | Skipped:
    """A directory event as the unified audit log carries it (``Workload: AzureActiveDirectory``):
    ``ModifiedProperties`` of ``{Name, NewValue}``, the target named by ``ObjectId``."""
    when = r.time("CreationTime", "TimeGenerated", "TimeGenerated [UTC]")
    props = [{"displayName": p.get("Name"), "newValue": p.get("NewValue")}
             for p in r.get("ModifiedProperties") or () if isinstance(p, dict)]
    object_id = (r.text("ObjectId") or "").replace("ServicePrincipal_", "")
    target = {"type": "ServicePrincipal", "id": object_id, "modifiedProperties": props}
    user = r.text("UserId")
    user_type = r.text("UserType")
    app = None
    if user_type in ("5", "6", "Application", "ServicePrincipal") or (user or "").startswith("ServicePrincipal_"):
        app, user = (user or "").replace("ServicePrincipal_", "") or None, None
    return _audit("m365", when, r.text("Operation") or "", user, app, [target],
                  (r.text("ResultStatus") or "Success").lower() in ("success", "succeeded", "true"),
                  r.text("ClientIP", "ActorIpAddress"), r.text("Id"))


def _audit(source: str, when: int, activity: str, initiator_user: str | None, initiator_app: str | None,
           targets: list, succeeded: bool, address: str | None, record_id: str | None) -> Mapped | Skipped:
    activity = activity.strip()
    lowered = activity.lower().rstrip(".")
    attrs = {"event.category": "iam", "event.action": activity or "audit",
             "event.outcome": "success" if succeeded else "failure", "source.address": address}
    app_id, target = _target_app(targets)
    issued = None
    if lowered in _CONSENT:
        attrs["event.action"] = "oauth.consent.granted"
        if app_id:
            attrs["oauth.client.id"] = app_id
        attrs["oauth.scopes"] = _scopes(target)
    elif lowered in _CREDENTIAL or (target is not None and _modified(target, "FederatedIdentityCredentials")):
        # a client secret, a certificate or a federated credential added to the app
        attrs["event.action"] = "credential.created"
        key = _key_id(target)
        if key:
            attrs["nhi.credential.created"] = key
            if app_id:
                issued = Issuance(key, f"{OAUTH_APP}:{app_id}", initiator_user or initiator_app or "", address)
    elif lowered in _ROLE:
        attrs["event.action"] = "role.assigned"
        attrs["oauth.scopes"] = _scopes(target)
    if app_id and lowered not in _CONSENT:
        attrs["nhi.target.identity"] = f"{OAUTH_APP}:{app_id}"  # what the change is about
    identity = None
    if initiator_user:
        attrs["user.id"] = initiator_user
    elif initiator_app:
        identity = IdentityHint(OAUTH_APP, initiator_app, "entra.initiatedBy.app")
    else:
        return Skipped(source, f"{activity or 'audit record'} without an initiator", when)
    return Mapped(source, present(attrs), when, identity, record_id=record_id, issued=issued)


def _key_id(target: dict | None) -> str | None:
    """The key id of a credential added (``KeyDescription`` holds ``KeyIdentifier=<guid>``)."""
    if target is None:
        return None
    text = _modified(target, "KeyDescription") or _modified(target, "FederatedIdentityCredentials") or ""
    found = re.search(r"KeyIdentifier=([0-9a-fA-F-]{36})", text) or _GUID.search(text)
    return found.group(1) if found and found.groups() else (found.group(0) if found else None)

