"""Where service principals and managed identities act on Azure: the Activity Log (Azure Resource
Manager operations), Key Vault audit events, and Microsoft Graph activity logs. Each in the shapes
users have it: diagnostic settings records (an Event Hub or storage account, ``{"records": [...]}``,
the body the Collector's ``azure`` encoding leaves) and Log Analytics / Sentinel table exports
(``AzureActivity``, ``AZKVAuditLogs``, ``MicrosoftGraphActivityLogs``).

Who acted comes from the token's claims (``identity.claims`` / ``identity.claim``, ``Claims`` in
the table): a managed identity (``xms_mirid``) is a ``workload``; an application token (``idtyp``
``app``, or an ``appid`` with no user in it) is the application (``oauth_app``, keyed on its
``appId``); a user's token is the user. Graph activity names ``AppId`` and, for delegated calls,
``UserId``: the app acts for the user (``nhi.identity.on_behalf_of``) unless it is one of
Microsoft's own clients (``first_party_apps.txt``), whose calls are the user's.

The Activity Log writes an operation when it starts and when it ends: only the end (``Success``,
``Failure``) is observed.
"""

from __future__ import annotations

import re

from ..model import OAUTH_APP, WORKLOAD
from .m365 import FIRST_PARTY_APPS
from .record import IdentityHint, Mapped, Skipped, VendorRecord, present

ACTIVITY = "azure_activity"
KEYVAULT = "azure_keyvault"
GRAPH = "graph_activity"

OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
# ARM status names as the Activity Log gives them, as HTTP status codes.
_STATUS = {"ok": 200, "created": 201, "accepted": 202, "nocontent": 204, "badrequest": 400, "unauthorized": 401,
           "forbidden": 403, "notfound": 404, "conflict": 409, "internalservererror": 500}
_IAM_OPERATIONS = ("microsoft.authorization/roleassignments/", "microsoft.authorization/roledefinitions/",
                   "microsoft.authorization/elevateaccess/", "microsoft.managedidentity/userassignedidentities/")
_ID_SEGMENT = re.compile(r"^(?:[0-9a-fA-F-]{32,36}|\d+|[^/@]+@[^/]+)$")
_MAIL = re.compile(r"^/(?:v1\.0|beta)/(?:users/([^/]+)|me)/(?:mailFolders/[^/]+/)?messages(?:/|$)", re.IGNORECASE)
_VAULT_OBJECT = re.compile(r"^(https://[^/]+/(?:secrets|keys|certificates|storage)/[^/]+)")


def _status(code) -> int | None:
    """An HTTP status as the tables and the diagnostic records give it: a number or its digits."""
    if isinstance(code, (int, float)) and not isinstance(code, bool):
        return int(code)
    return int(code) if isinstance(code, str) and code.isdigit() else None


def _claims(r: VendorRecord) -> dict:
    found = r.get("identity.claims", "identity.claim", "Claims", "Identity.claim", "claims")
    return found if isinstance(found, dict) else {}


def _claim(claims: dict, *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _actor(claims: dict, caller: str | None) -> tuple[IdentityHint | None, str | None]:
    """(the identity a token's claims name, the user id when a person acted)."""
    app = _claim(claims, "appid", "azp")
    user = _claim(claims, UPN, "upn", "unique_name") or (caller if caller and "@" in caller else None)
    if _claim(claims, "xms_mirid"):
        return IdentityHint(WORKLOAD, f"entra-mi:{app or _claim(claims, OID, 'oid')}", "azure.claims.xms_mirid",
                            group="entra:managed-identities"), None
    if user and _claim(claims, "idtyp") != "app":
        return None, user
    if app:
        return IdentityHint(OAUTH_APP, app, "azure.claims.appid"), None
    return None, caller


def _mapped(name: str, attrs: dict, when: int, claims: dict, caller: str | None,
            record_id: str | None) -> Mapped | Skipped:
    hint, user = _actor(claims, caller)
    if hint is None and not user:
        return Skipped(name, "no caller in the token's claims", when)
    if hint is None:
        attrs["user.id"] = user
    elif hint.kind == OAUTH_APP:
        attrs["oauth.client.id"] = hint.principal
    return Mapped(name, present(attrs), when, hint, record_id=record_id)


def map_activity(r: VendorRecord) -> Mapped | Skipped:
    """One Activity Log record: an ARM operation on a resource."""
    when = r.time("time", "TimeGenerated", "eventTimestamp")
    result = (r.text("resultType", "ActivityStatusValue", "ActivityStatus", "status.value") or "").lower()
    if result in ("start", "started", "accept", "accepted", "active"):
        return Skipped(ACTIVITY, f"operation {result}: only its end is observed", when)
    operation = (r.text("operationName", "OperationNameValue", "operationName.value") or "").lower()
    status = (r.text("properties.statusCode", "resultSignature") or "").replace(".", " ").split(" ")[-1].lower()
    attrs = {
        "event.category": "iam" if operation.startswith(_IAM_OPERATIONS) else "api",
        "event.action": operation,
        "event.outcome": "failure" if result in ("failure", "failed") else "success",
        "cloud.resource_id": (r.text("resourceId", "ResourceId", "_ResourceId") or "").lower() or None,
        "source.address": r.text("callerIpAddress", "CallerIpAddress", "httpRequest.clientIpAddress"),
        "http.response.status_code": _STATUS.get(status),
        "cloud.provider": "azure",
    }
    return _mapped(ACTIVITY, attrs, when, _claims(r), r.text("caller", "Caller"),
                   r.text("eventDataId", "correlationId", "CorrelationId"))


def map_keyvault(r: VendorRecord) -> Mapped | Skipped:
    """One Key Vault audit event: a secret, key or certificate read or changed."""
    when = r.time("time", "TimeGenerated")
    operation = r.text("operationName", "OperationName") or ""
    status = _status(r.get("properties.httpStatusCode", "httpStatusCode", "HttpStatusCode", "httpStatusCode_d"))
    target = r.text("properties.id", "id_s", "Id", "requestUri_s") or r.text("resourceId", "_ResourceId")
    found = _VAULT_OBJECT.match(target or "")
    result = (r.text("resultType", "ResultType") or "").lower()
    attrs = {
        "event.category": "api",
        "event.action": f"keyvault/{operation}" if operation else None,
        "event.outcome": "failure" if result not in ("", "success") or (status is not None and status >= 400)
        else "success",
        "cloud.resource_id": (found.group(1) if found else target or "").lower() or None,  # the object, not its version
        "source.address": r.text("callerIpAddress", "CallerIPAddress", "CallerIpAddress"),
        "user_agent.original": r.text("properties.clientInfo", "clientInfo_s", "ClientInfo"),
        "http.response.status_code": status,
        "cloud.provider": "azure",
    }
    return _mapped(KEYVAULT, attrs, when, _claims(r), None, r.text("correlationId", "CorrelationId"))


def _template(path: str) -> str:
    return "/".join("{id}" if _ID_SEGMENT.match(part) else part for part in path.split("/"))


def map_graph(r: VendorRecord) -> Mapped | Skipped:
    """One Microsoft Graph call: what an application did with its grant."""
    p = r.inner(r.get("properties") or r.data)
    when = r.time("time", "TimeGenerated") if r.get("time", "TimeGenerated") else p.time("timeGenerated")
    app = p.text("appId", "AppId")
    if not app:
        return Skipped(GRAPH, "Graph activity without AppId", when)
    user = p.text("userId", "UserId")
    method = (p.text("requestMethod", "RequestMethod") or "GET").upper()
    uri = p.text("requestUri", "RequestUri") or ""
    path = "/" + uri.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0] if uri else ""
    status = _status(p.get("responseStatusCode", "ResponseStatusCode"))
    attrs = {
        "event.category": "api",
        "event.action": f"{method} {_template(path)}",
        "event.outcome": "failure" if status is not None and status >= 400 else "success",
        "cloud.resource_id": path or None,
        "url.path": path or None,
        "http.request.method": method,
        "http.response.status_code": status,
        "source.address": p.text("ipAddress", "IPAddress", "callerIpAddress") or r.text("callerIpAddress"),
        "user_agent.original": p.text("userAgent", "UserAgent"),
        "oauth.scopes": p.text("scopes", "Scopes", "roles", "Roles"),
        "cloud.provider": "azure",
    }
    mail = _MAIL.match(path)
    if mail and method == "GET":
        attrs["event.category"] = "email"
        attrs["event.action"] = "mailbox.items.read"
        attrs["cloud.resource_id"] = mail.group(1) or user
    if user and app.lower() in FIRST_PARTY_APPS:
        attrs["user.id"] = user  # Outlook, Teams... calling Graph for the signed-in user
        return Mapped(GRAPH, present(attrs), when, record_id=p.text("requestId", "RequestId"))
    attrs["oauth.client.id"] = app
    if user:
        attrs["nhi.identity.on_behalf_of"] = user
    sp = p.text("servicePrincipalId", "ServicePrincipalId")
    if sp and sp.lower() != app.lower():
        attrs["nhi.identity.alias"] = sp  # the app's service principal object id
    return Mapped(GRAPH, present(attrs), when, IdentityHint(OAUTH_APP, app, "graph.AppId"),
                  record_id=p.text("requestId", "RequestId"))
