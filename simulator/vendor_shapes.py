"""Simulated records in the shapes real audit logs arrive in: the vendor's record as the log body,
no attributes, as a Collector's receiver leaves it (TELEMETRY.md section 5).

The fleet renders every call as the contract's attributes first (``behaviour.render``); this
module re-renders one as the audit record its real counterpart would write: a CI role's AWS
calls as CloudTrail, a Kubernetes service account's requests as API server audit events (JSON
text, as the filelog receiver leaves a line without a parser), a GCP service account's calls as
Cloud Audit Log entries, an OAuth app's token requests as Entra ID service-principal sign-ins, a
mailbox's forwarding rule as a Microsoft 365 ``New-InboxRule`` and its consent grant as an Entra
ID audit record. So the bench exercises the same input profiles real data goes through; what the
processor must find is the same behaviour either way.

Deterministic without a random source of its own (ids come from the record's trace id), so the
rest of a seeded world is the same whichever shape is chosen.
"""

from __future__ import annotations

import json
import time

from .fleet import ACCOUNT
from .records import SimRecord

OTEL = "otel"
SOURCES = (OTEL, "cloudtrail", "kubernetes", "gcp_audit", "entra_signin", "entra_audit", "m365")
TENANT = "5d2f7c1a-0000-4000-8000-0000000e7a11"


def _iso(time_ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time_ns // 10**9)) + f".{time_ns % 10**9 // 1000:06d}Z"


def _guid(seed: bytes) -> str:
    h = (seed + bytes(16))[:16].hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def native_source(record: SimRecord, archetype: str) -> str | None:
    """The audit log this record would really be found in, when there is one."""
    a = record.attributes
    if archetype in ("ci_role", "rotation_role", "iam_user_key") or a.get("rpc.system") == "aws-api":
        return "cloudtrail"
    if archetype == "k8s_sa":
        return "kubernetes"
    if archetype == "gcp_sa":
        return "gcp_audit"
    if archetype == "oauth_app" and str(a.get("event.action", "")).startswith("token."):
        return "entra_signin"
    if archetype == "oauth_app" and "on_behalf_of" in record.extra:
        return "m365"  # a delegated mailbox read: the unified audit log's MailItemsAccessed
    if archetype in ("mailbox", "human"):
        action = a.get("event.action")
        if action == "mailbox.forwarding_rule.created":
            return "m365"
        if action in ("oauth.consent.granted", "credential.created"):
            return "entra_audit"
    return None


def reshape(record: SimRecord, archetype: str, source: str) -> SimRecord:
    """``record`` as ``source`` writes it; unchanged when that source would not hold it."""
    if source == OTEL or native_source(record, archetype) != source:
        return record
    body = _RENDER[source](record)
    shaped = SimRecord(record.time_ns, "logs", record.resource, {}, trace_id=record.trace_id,
                       span_id=record.span_id, extra=record.extra)
    if source == "kubernetes":
        shaped.body = json.dumps(body, separators=(",", ":"))
    else:
        shaped.body_object = body
    return shaped


def _cloudtrail(r: SimRecord) -> dict:
    a = r.attributes
    arn = str(a["aws.principal.arn"])
    method = str(a.get("rpc.method", ""))
    params = a.get("aws.request.parameters")
    record = {
        "eventVersion": "1.09",
        "userIdentity": _user_identity(r, arn),
        "eventTime": _iso(r.time_ns)[:19] + "Z",
        "eventSource": a.get("rpc.service"), "eventName": method, "awsRegion": a.get("cloud.region", "eu-west-1"),
        "sourceIPAddress": a.get("source.address"), "userAgent": a.get("user_agent.original"),
        "requestParameters": json.loads(params) if isinstance(params, str) else None,
        "responseElements": None,
        "requestID": _guid(r.span_id + r.trace_id), "eventID": _guid(r.trace_id),
        "readOnly": method.startswith(("Get", "List", "Describe")),
        "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }
    if a.get("aws.error.code"):
        record["errorCode"] = a["aws.error.code"]
        record["errorMessage"] = f"User: {arn} is not authorized to perform: {method}"
    return record


def _user_identity(r: SimRecord, arn: str) -> dict:
    """CloudTrail's ``userIdentity``: an IAM user calling with its access key, or a role session
    (with the OIDC provider that opened it, when one did)."""
    a = r.attributes
    unique = r.trace_id[:8].hex().upper()
    if a.get("aws.principal.type") == "IAMUser":
        return {"type": "IAMUser", "principalId": f"AIDA{unique}", "arn": arn, "accountId": ACCOUNT,
                "accessKeyId": a.get("aws.access_key.id"), "userName": arn.rsplit("/", 1)[-1]}
    role, _, session = arn.split("assumed-role/", 1)[1].partition("/")
    context: dict = {"sessionIssuer": {"type": "Role", "principalId": f"AROA{unique}",
                                       "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}", "accountId": ACCOUNT,
                                       "userName": role},
                     "attributes": {"creationDate": _iso(r.time_ns), "mfaAuthenticated": "false"}}
    if a.get("aws.session.web_identity_provider"):
        context["webIdFederationData"] = {"federatedProvider": a["aws.session.web_identity_provider"], "attributes": {}}
    return {"type": "AssumedRole", "principalId": f"AROA{unique}:{session}", "arn": arn, "accountId": ACCOUNT,
            "accessKeyId": a.get("aws.access_key.id"), "sessionContext": context}


def _kubernetes(r: SimRecord) -> dict:
    a = r.attributes
    verb, _, resource = str(a.get("event.action", "")).partition(" ")
    path = str(a.get("url.path", ""))
    parts = path.strip("/").split("/")
    namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts[:-1] else None
    name = parts[-1] if len(parts) >= 5 else None
    status = int(a.get("http.response.status_code", 200))
    event = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": _guid(r.trace_id),
        "stage": "ResponseComplete", "requestURI": path, "verb": verb,
        "user": {"username": a.get("user.id"), "uid": _guid(str(a.get("user.id")).encode()),
                 "groups": ["system:serviceaccounts", "system:authenticated"]},
        "sourceIPs": [a.get("source.address")], "userAgent": a.get("user_agent.original"),
        "objectRef": {k: v for k, v in (("resource", resource), ("namespace", namespace), ("name", name),
                                        ("apiVersion", "v1")) if v},
        "responseStatus": {"metadata": {}, "code": status},
        "requestReceivedTimestamp": _iso(r.time_ns), "stageTimestamp": _iso(r.time_ns + 3_000_000),
    }
    return event


def _gcp_audit(r: SimRecord) -> dict:
    a = r.attributes
    action = str(a.get("event.action", ""))
    if "/" in action:  # "iam.googleapis.com/google.iam.admin.v1.CreateServiceAccountKey": service and method
        service, action = action.split("/", 1)
    else:
        service = "bigquery.googleapis.com" if action.startswith("bigquery.") else "storage.googleapis.com"
    denied = a.get("error.type") == "PERMISSION_DENIED"
    failed = a.get("event.outcome") == "failure"
    return {
        "insertId": r.trace_id[:8].hex(),
        "logName": "projects/p/logs/cloudaudit.googleapis.com%2F" + (
            "data_access" if service in ("storage.googleapis.com", "bigquery.googleapis.com") else "activity"),
        "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                         "authenticationInfo": {"principalSubject" if str(a.get("user.id")).startswith("principal")
                                                else "principalEmail": a.get("user.id")},
                         "methodName": action, "serviceName": service, "resourceName": a.get("cloud.resource_id"),
                         "requestMetadata": {"callerIp": a.get("source.address"),
                                             "callerSuppliedUserAgent": a.get("user_agent.original")},
                         "status": {"code": 7, "message": "PERMISSION_DENIED"} if denied else
                         ({"code": 14, "message": "UNAVAILABLE"} if failed else {})},
        "resource": {"type": {"storage.googleapis.com": "gcs_bucket", "bigquery.googleapis.com": "bigquery_resource",
                              "iam.googleapis.com": "service_account"}.get(service, "project")},
        "severity": "ERROR" if failed else "INFO", "timestamp": _iso(r.time_ns),
        "receiveTimestamp": _iso(r.time_ns + 500_000_000),
    }


def _entra_signin(r: SimRecord) -> dict:
    a = r.attributes
    app_id = a.get("oauth.client.id")
    ok = a.get("event.outcome") != "failure"
    return {
        "time": _iso(r.time_ns), "resourceId": f"/tenants/{TENANT}/providers/Microsoft.aadiam",
        "operationName": "Sign-in activity", "category": "ServicePrincipalSignInLogs", "tenantId": TENANT,
        "resultType": "0" if ok else "7000215", "callerIpAddress": a.get("source.address"), "Level": 4,
        "properties": {"id": _guid(r.trace_id), "createdDateTime": _iso(r.time_ns), "appId": app_id,
                       "ipAddress": a.get("source.address"), "resourceDisplayName": "Microsoft Graph",
                       "servicePrincipalId": _guid(str(app_id).encode()[::-1]),
                       "status": {"errorCode": 0 if ok else 7000215},
                       "location": {"countryOrRegion": a.get("geo.country.iso_code") or "NL"},
                       "userAgent": a.get("user_agent.original"),
                       **({"servicePrincipalCredentialKeyId": r.extra["key_id"]} if r.extra.get("key_id") else {})},
    }


def _entra_audit(r: SimRecord) -> dict:
    """A directory audit record as diagnostic settings export it: a consent, or a secret added to
    the app ("Add service principal credentials", which names the app by its service principal's
    object id only, as the audit log often does: the processor learns the appId from sign-ins)."""
    a = r.attributes
    app_id = a.get("oauth.client.id")
    if a.get("event.action") == "credential.created":
        activity, operation = "Add service principal credentials", "Update"
        changes = [{"displayName": "KeyDescription", "oldValue": "[]",
                    "newValue": f'["[KeyIdentifier={r.extra.get("key_id")},KeyType=Password,KeyUsage=Verify,'
                                f'DisplayName=rotated]"]'},
                   {"displayName": "Included Updated Properties", "oldValue": None, "newValue": '"KeyDescription"'}]
    else:
        activity, operation = "Consent to application", "Assign"
        changes = [{"displayName": "ConsentAction.Permissions", "oldValue": None,
                    "newValue": f'"[] => [[Scope: {a.get("oauth.scopes") or ""}, ]]; "'},
                   {"displayName": "TargetId.ServicePrincipalNames", "oldValue": None, "newValue": f'"{app_id}"'}]
    return {
        "time": _iso(r.time_ns), "operationName": activity, "category": "AuditLogs",
        "tenantId": TENANT, "callerIpAddress": a.get("source.address"), "Level": 4,
        "properties": {
            "id": f"Directory_{_guid(r.trace_id)}", "category": "ApplicationManagement", "result": "success",
            "activityDisplayName": activity, "activityDateTime": _iso(r.time_ns),
            "loggedByService": "Core Directory", "operationType": operation,
            "initiatedBy": {"user": {"id": _guid(str(a.get("user.id")).encode()), "userPrincipalName": a.get("user.id"),
                                     "ipAddress": a.get("source.address")}},
            "targetResources": [{"id": _guid(str(app_id).encode()[::-1]), "type": "ServicePrincipal",
                                 "modifiedProperties": changes}],
            "additionalDetails": [{"key": "User-Agent", "value": a.get("user_agent.original")}]},
    }


def _m365(r: SimRecord) -> dict:
    a = r.attributes
    if "on_behalf_of" in r.extra:
        return _mail_items_accessed(r)
    user = a.get("user.id") or a.get("email.from.address")
    return {
        "CreationTime": _iso(r.time_ns)[:19], "Id": _guid(r.trace_id), "Operation": "New-InboxRule",
        "OrganizationId": TENANT, "RecordType": 1, "ResultStatus": "True", "UserKey": _guid(str(user).encode()),
        "UserType": 2, "Version": 1, "Workload": "Exchange", "ClientIP": f"{a.get('source.address')}:{40000 + r.span_id[0]}",
        "ObjectId": f"{user}\\Forward", "UserId": user, "ClientInfoString": a.get("user_agent.original"),
        "Parameters": [{"Name": "Name", "Value": "Forward"}, {"Name": "ForwardTo", "Value": a.get("email.to.address")},
                       {"Name": "StopProcessingRules", "Value": "True"}],
    }


def _mail_items_accessed(r: SimRecord) -> dict:
    """An application reading a user's mailbox with her delegated permission, as the unified audit
    log records it: the user in ``UserId``, the application in ``AppId`` / ``ClientAppId``."""
    a = r.attributes
    user, app = r.extra["on_behalf_of"], a.get("oauth.client.id")
    return {
        "CreationTime": _iso(r.time_ns)[:19], "Id": _guid(r.trace_id), "Operation": "MailItemsAccessed",
        "OrganizationId": TENANT, "RecordType": 50, "ResultStatus": "Succeeded", "UserKey": _guid(str(user).encode()),
        "UserType": 0, "Version": 1, "Workload": "Exchange", "ClientIPAddress": a.get("source.address"),
        "UserId": user, "AppId": app, "ClientAppId": app, "ClientInfoString": "Client=REST;Client=RESTSystem;;",
        "MailAccessType": "Bind", "MailboxGuid": _guid(str(user).encode()[::-1]), "MailboxOwnerUPN": user,
        "OperationCount": max(1, int(a.get("http.response.body.size", 1)) // 20_000),
        "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}, {"Name": "IsThrottled", "Value": "False"}],
    }


_RENDER = {"cloudtrail": _cloudtrail, "kubernetes": _kubernetes, "gcp_audit": _gcp_audit,
           "entra_signin": _entra_signin, "entra_audit": _entra_audit, "m365": _m365}
