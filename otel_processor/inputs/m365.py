"""The Microsoft 365 unified audit log: the Office 365 Management Activity API's JSON (common schema:
``CreationTime``, ``Operation``, ``RecordType``, ``Workload``, ``UserId``, ``ClientIP``...) and the
Log Analytics / Sentinel ``OfficeActivity`` table (``OfficeWorkload``, ``Client_IPAddress``,
``Parameters`` as JSON text...).

The actor is ``UserId``, or the application (``ClientAppId`` / ``AppId``, an ``oauth_app``) when the
record says an application acted (``UserType`` 5 or 6, or app-only access), or when an application
that is not one of Microsoft's own clients (``first_party_apps.txt``) acted with the user's
delegated permissions: the app acts, with the user as ``nhi.identity.on_behalf_of``. Inbox rules and mailbox
settings that forward or redirect mail become ``mailbox.forwarding_rule.created`` (or
``mailbox.rule.created`` when they stay inside); ``MailItemsAccessed`` becomes
``mailbox.items.read`` on ``MailboxOwnerUPN`` with the number of items as volume. Directory
events the unified log also carries (``Workload: AzureActiveDirectory``) are read as Entra ID audit.
"""

from __future__ import annotations

import os

from ..model import OAUTH_APP
from .record import IdentityHint, Mapped, Skipped, VendorRecord, present

NAME = "m365"


def _first_party() -> frozenset[str]:
    path = os.path.join(os.path.dirname(__file__), "first_party_apps.txt")
    with open(path, encoding="utf-8") as fh:
        return frozenset(line.split()[0].lower() for line in fh if line.strip() and not line.startswith("#"))


FIRST_PARTY_APPS = _first_party()
RULE_OPERATIONS = frozenset({"new-inboxrule", "set-inboxrule", "updateinboxrules", "set-mailbox",
                             "new-transportrule", "set-transportrule"})
FORWARD_PARAMETERS = ("forwardto", "redirectto", "forwardasattachmentto", "forwardingsmtpaddress",
                      "forwardingaddress", "redirectmessageto", "blindcopyto")
APP_USER_TYPES = frozenset({"5", "6", "Application", "ServicePrincipal"})


def _parameters(r: VendorRecord) -> dict[str, str]:
    """``Parameters`` (cmdlets) and ``OperationProperties`` (OWA) as name -> value, lower-case names."""
    out = {}
    for key in ("Parameters", "OperationProperties"):
        for item in r.get(key) or ():
            if isinstance(item, dict):
                name = str(item.get("Name", item.get("name", ""))).lower()
                value = item.get("Value", item.get("value"))
                if name and value not in (None, ""):
                    out[name] = str(value)
    return out


def _items(r: VendorRecord) -> int:
    count = r.get("OperationCount")
    if isinstance(count, (int, float)) or (isinstance(count, str) and count.isdigit()):
        return max(1, int(count))
    folders = r.get("Folders") or []
    total = sum(len(f.get("FolderItems") or []) for f in folders if isinstance(f, dict))
    return max(1, total)


def map_record(r: VendorRecord) -> Mapped | Skipped:
    workload = r.text("Workload", "OfficeWorkload") or ""
    if workload == "AzureActiveDirectory" and r.get("ModifiedProperties") is not None and r.text("Operation"):
        from .entra import map_audit_like_m365

        return map_audit_like_m365(r)
    when = r.time("CreationTime", "TimeGenerated", "TimeGenerated [UTC]")
    operation = r.text("Operation") or ""
    lowered = operation.lower()
    status = (r.text("ResultStatus") or "Succeeded").lower()
    outcome = "failure" if status in ("failed", "failure", "false") else "success"
    attrs = {"event.category": "email" if workload == "Exchange" else "api", "event.action": operation,
             "event.outcome": outcome,
             "source.address": _address(r.text("ClientIP", "ClientIPAddress", "Client_IPAddress", "ActorIpAddress")),
             "user_agent.original": r.text("ClientInfoString", "UserAgent")}
    if lowered in RULE_OPERATIONS:
        params = _parameters(r)
        forward = next((params[p] for p in FORWARD_PARAMETERS if p in params), None)
        if forward or lowered in ("new-inboxrule", "updateinboxrules"):
            attrs["event.category"] = "email"
            owner = r.text("MailboxOwnerUPN", "ObjectId") or r.text("UserId")
            attrs["email.from.address"] = owner
            if forward:
                attrs["event.action"] = "mailbox.forwarding_rule.created"
                attrs["email.to.address"] = forward.replace("smtp:", "").replace("SMTP:", "")
            else:
                attrs["event.action"] = "mailbox.rule.created"
    elif lowered == "mailitemsaccessed":
        attrs["event.category"] = "email"
        attrs["event.action"] = "mailbox.items.read"
        attrs["cloud.resource_id"] = r.text("MailboxOwnerUPN")
        attrs["messaging.batch.message_count"] = _items(r)
    elif workload in ("SharePoint", "OneDrive") and r.text("ObjectId"):
        attrs["cloud.resource_id"] = r.text("ObjectId")
    app = r.text("ClientAppId", "AppId", "ApplicationId", "AppAccessContext.ClientAppId")
    user_type = r.text("UserType")
    user_id = r.text("UserId") or ""
    identity = None
    # App-only access: the user type says so, or the user is a placeholder for the app
    # (SharePoint's "app@sharepoint", Exchange's "ServicePrincipal_<id>" or a bare SID).
    if app and (user_type in APP_USER_TYPES or not user_id or user_id.startswith(("ServicePrincipal_", "S-1-5-"))
                or user_id.lower() == "app@sharepoint"):
        identity = IdentityHint(OAUTH_APP, app, "m365.ClientAppId")
        attrs["oauth.client.id"] = app
        if user_id.startswith("ServicePrincipal_") and user_id[17:].lower() != app.lower():
            attrs["nhi.identity.alias"] = user_id[17:]  # its service principal's object id
    elif app and user_id and app.lower() not in FIRST_PARTY_APPS:
        # Delegated access: an application of someone else's acting with the user's permissions
        # (what a consented app, or one given a new secret, does with a mailbox). The app acts;
        # the user stands beside it.
        identity = IdentityHint(OAUTH_APP, app, "m365.ClientAppId")
        attrs["oauth.client.id"] = app
        attrs["nhi.identity.on_behalf_of"] = user_id
    else:
        user = r.text("UserId", "UserKey")
        if not user:
            return Skipped(NAME, f"{operation or 'record'} without UserId", when)
        attrs["user.id"] = user
    return Mapped(NAME, present(attrs), when, identity,
                  record_id=r.text("Id", "OfficeId"))


def _address(value: str | None) -> str | None:
    """``203.0.113.9:51234`` and ``[2001:db8::1]:443`` are the address without the port."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("[") and "]" in value:
        return value[1:value.index("]")]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value
