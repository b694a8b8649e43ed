"""Who acted, as the vendors define it: the kind of an identity comes from what a record says
about its principal and credential before the principal's name. Each row is a record written from
the vendor's public schema, read through the same path a Collector delivers it by (the record as
the log body), with the identity it must be attributed to: non-human rows beside their human
look-alikes."""

from __future__ import annotations

import pytest

from otel_processor.anyvalue import set_value
from otel_processor.pipeline import BatchProcessor

from otlp_builders import attrs_of, logs

ACCOUNT = "111122223333"
T = "2026-11-02T09:15:00Z"


def cloudtrail(user_identity: dict, event: str = "GetSecretValue", source: str = "secretsmanager.amazonaws.com",
               **extra) -> dict:
    return {"eventVersion": "1.09", "userIdentity": user_identity, "eventTime": T, "eventSource": source,
            "eventName": event, "awsRegion": "eu-west-1", "sourceIPAddress": "198.51.100.7",
            "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64", "requestParameters": {"secretId": "prod/db"},
            "responseElements": None, "requestID": "r-1", "eventID": "e-1", "eventType": "AwsApiCall",
            "recipientAccountId": ACCOUNT, **extra}


def session_context(**extra) -> dict:
    return {"attributes": {"creationDate": T, "mfaAuthenticated": "false"}, **extra}


def k8s(username: str, groups: list[str]) -> dict:
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "a-1",
            "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/payments/secrets", "verb": "list",
            "user": {"username": username, "groups": groups}, "sourceIPs": ["10.0.3.4"], "userAgent": "kubelet/v1.29.2",
            "objectRef": {"resource": "secrets", "namespace": "payments", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200}, "requestReceivedTimestamp": T, "stageTimestamp": T}


def gcp(principal_email: str | None = None, subject: str | None = None) -> dict:
    auth = {k: v for k, v in (("principalEmail", principal_email), ("principalSubject", subject)) if v}
    return {"protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "authenticationInfo": auth,
                             "requestMetadata": {"callerIp": "198.51.100.7", "callerSuppliedUserAgent": "gcloud"},
                             "serviceName": "secretmanager.googleapis.com",
                             "methodName": "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion",
                             "resourceName": "projects/acme-prod/secrets/db/versions/1", "status": {}},
            "insertId": "i-1", "resource": {"type": "audited_resource", "labels": {"project_id": "acme-prod"}},
            "timestamp": T, "severity": "NOTICE", "logName": "projects/acme-prod/logs/cloudaudit.googleapis.com%2Fdata_access"}


def mail_items_accessed(user: str, app: str | None, owner: str | None = None, items: int = 7) -> dict:
    """The unified audit log's MailItemsAccessed (Management Activity API, Exchange schema)."""
    record = {"CreationTime": "2026-11-02T09:15:00", "Id": "5b4f0a2e-0000-4000-8000-000000000001",
              "Operation": "MailItemsAccessed", "OrganizationId": "0f1e2d3c-0000-4000-8000-000000000000",
              "RecordType": 50, "ResultStatus": "Succeeded", "UserKey": "10032001A1B2C3D4", "UserType": 0,
              "Version": 1, "Workload": "Exchange", "ClientIPAddress": "198.51.100.7", "UserId": user,
              "ClientInfoString": "Client=REST;Client=RESTSystem;;", "MailAccessType": "Bind",
              "MailboxGuid": "7e6d5c4b-0000-4000-8000-000000000000", "MailboxOwnerUPN": owner or user,
              "OperationCount": items,
              "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}, {"Name": "IsThrottled", "Value": "False"}]}
    if app:
        record.update(AppId=app, ClientAppId=app)
    return record


MAIL_APP = "3f8a9b7c-0000-4000-8000-00000000a001"  # a tenant's own registered app
OUTLOOK_WEB = "9199bf20-a13f-4107-85dc-02114787ef48"  # One Outlook Web, Microsoft's own client

ROWS = [
    # Microsoft 365: an app reading a mailbox with a user's delegated permissions is the app
    ("an app reads mail for a user", mail_items_accessed("cfo@corp.example", MAIL_APP), f"oauth_app:{MAIL_APP}"),
    ("the user reads her mail in Outlook on the web (look-alike)", mail_items_accessed("cfo@corp.example", OUTLOOK_WEB),
     "human:cfo@corp.example"),
    ("the user reads her mail, no client app recorded (look-alike)", mail_items_accessed("cfo@corp.example", None),
     "human:cfo@corp.example"),
    # AWS: an IAM user through its long-lived key is the key; the same user at the console is a person
    ("IAM user, access key, CLI", cloudtrail({"type": "IAMUser", "principalId": "AIDA1", "arn": f"arn:aws:iam::{ACCOUNT}:user/ci-deployer",
                                             "accountId": ACCOUNT, "accessKeyId": "AKIAEXAMPLE000000001", "userName": "ci-deployer"}),
     f"api_key:arn:aws:iam::{ACCOUNT}:user/ci-deployer/AKIAEXAMPLE000000001"),
    ("IAM user, temporary key from GetSessionToken", cloudtrail({"type": "IAMUser", "principalId": "AIDA1",
                                                                 "arn": f"arn:aws:iam::{ACCOUNT}:user/ci-deployer", "accountId": ACCOUNT,
                                                                 "accessKeyId": "ASIAEXAMPLE000000002", "userName": "ci-deployer",
                                                                 "sessionContext": session_context()}),
     f"api_key:arn:aws:iam::{ACCOUNT}:user/ci-deployer"),
    ("IAM user at the console (look-alike)", cloudtrail({"type": "IAMUser", "principalId": "AIDA2", "arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
                                                         "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLE000000003", "userName": "alice",
                                                         "sessionContext": session_context()},
                                                        sessionCredentialFromConsole="true"),
     f"human:arn:aws:iam::{ACCOUNT}:user/alice"),
    ("root (look-alike)", cloudtrail({"type": "Root", "principalId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root",
                                      "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLE000000004"}, sessionCredentialFromConsole="true"),
     f"human:arn:aws:iam::{ACCOUNT}:root"),
    ("IAM Identity Center session (look-alike)",
     cloudtrail({"type": "AssumedRole", "principalId": "AROA1:alice@corp.example",
                 "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/alice@corp.example",
                 "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLE000000005",
                 "sessionContext": session_context(sessionIssuer={"type": "Role", "userName": "AWSReservedSSO_AdministratorAccess_0123456789abcdef"})}),
     "human:alice@corp.example"),
    ("instance role session", cloudtrail({"type": "AssumedRole", "principalId": "AROA2:i-0abc",
                                          "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/app-instance-role/i-0abc",
                                          "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLE000000006",
                                          "sessionContext": session_context(ec2RoleDelivery="2.0")}),
     f"workload:arn:aws:iam::{ACCOUNT}:role/app-instance-role"),
    ("GitHub Actions OIDC session", cloudtrail({"type": "AssumedRole", "principalId": "AROA3:GitHubActions",
                                                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/gh-deploy/GitHubActions",
                                                "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLE000000007",
                                                "sessionContext": session_context(webIdFederationData={
                                                    "federatedProvider": f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com",
                                                    "attributes": {}})}),
     f"ci_job:arn:aws:iam::{ACCOUNT}:role/gh-deploy"),
    ("GitHub Actions OIDC AssumeRoleWithWebIdentity",
     cloudtrail({"type": "WebIdentityUser", "principalId": "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com:sts.amazonaws.com:repo:acme/api:ref:refs/heads/main",
                 "userName": "repo:acme/api:ref:refs/heads/main", "identityProvider": "token.actions.githubusercontent.com"},
                event="AssumeRoleWithWebIdentity", source="sts.amazonaws.com"),
     "ci_job:repo:acme/api:ref:refs/heads/main"),
    # Kubernetes: a node's kubelet and the control plane are machines; a person is a person
    ("kubelet", k8s("system:node:ip-10-0-1-2.eu-west-1.compute.internal", ["system:nodes", "system:authenticated"]),
     "workload:system:node:ip-10-0-1-2.eu-west-1.compute.internal"),
    ("controller manager", k8s("system:kube-controller-manager", ["system:authenticated"]), "workload:system:kube-controller-manager"),
    ("a person through kubectl (look-alike)", k8s("alice@corp.example", ["developers", "system:authenticated"]),
     "human:alice@corp.example"),
    ("kubelet, re-exported without auditID", {k: v for k, v in k8s("system:node:n1", ["system:nodes"]).items()
                                               if k != "auditID"}, "workload:system:node:n1"),
    # Google Cloud: a federated workload is a workload
    ("workload identity federation", gcp(subject="principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/github/subject/repo:acme/api:ref:refs/heads/main"),
     "workload:principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/github/subject/repo:acme/api:ref:refs/heads/main"),
    ("a person (look-alike)", gcp("alice@corp.example"), "human:alice@corp.example"),
]


@pytest.mark.parametrize("body, expected", [(b, e) for _, b, e in ROWS], ids=[name for name, _, _ in ROWS])
def test_the_record_is_attributed_to_the_identity_its_principal_and_credential_say(body, expected):
    request = logs({"cloud.provider": "x"}, {"attrs": {}})
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    set_value(record.body, body)
    BatchProcessor().process_logs(request)
    assert attrs_of(record.attributes).get("nhi.identity.id") == expected


def test_an_app_reading_a_mailbox_for_a_user_carries_the_user_beside_it_and_her_own_reads_do_not():
    out = {}
    for name, app in (("app", MAIL_APP), ("own", OUTLOOK_WEB)):
        request = logs({"cloud.provider": "azure"}, {"attrs": {}})
        record = request.resource_logs[0].scope_logs[0].log_records[0]
        set_value(record.body, mail_items_accessed("cfo@corp.example", app))
        BatchProcessor().process_logs(request)
        out[name] = attrs_of(record.attributes)
    assert (out["app"]["nhi.identity.kind"], out["app"]["nhi.identity.on_behalf_of"]) == ("oauth_app", "cfo@corp.example")
    assert out["own"]["nhi.identity.id"] == "human:cfo@corp.example" and "nhi.identity.on_behalf_of" not in out["own"]


def test_a_sender_cannot_set_on_behalf_of_itself():
    request = logs({"service.name": "x"}, {"attrs": {"user.id": "svc-a", "event.category": "api",
                                                     "nhi.identity.on_behalf_of": "ceo@corp.example"}})
    BatchProcessor().process_logs(request)
    got = attrs_of(request.resource_logs[0].scope_logs[0].log_records[0].attributes)
    assert got["nhi.identity.id"] == "service_account:svc-a" and "nhi.identity.on_behalf_of" not in got


def test_half_the_rows_are_people_or_look_alikes():
    assert sum(e.startswith("human:") for _, _, e in ROWS) >= 5
