"""AWS CloudTrail, as delivered to S3 (``{"Records": [...]}``), CloudTrail Lake and SIEM exports (JSON
lines, sometimes with ``@timestamp`` in place of ``eventTime``), and as the Collector's AWS logs
encoding extension maps it (``rpc.service`` = eventSource, ``rpc.method`` = eventName, the caller
in ``aws.principal.*``; that shape is read natively, without this profile).

Identity: ``userIdentity.arn`` (an assumed-role session resolves to its role). Credentials an AWS
service issues (``AssumeRole`` by ``ec2.amazonaws.com``, which hands an instance its role session)
are attributed to the session they issue, from ``responseElements``, with the issued key as the
credential: that is how the processor learns which key belongs to which instance. CloudTrail
wraps some user agents in brackets (``[aws-cli/1.18.136 ...]``): the client is what is inside.
"""

from __future__ import annotations

from .record import Issuance, Mapped, Skipped, VendorRecord, present, text_of

NAME = "cloudtrail"
ISSUING = frozenset({"AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity", "GetSessionToken",
                     "GetFederationToken", "GetRoleCredentials"})


def user_agent(value: str | None) -> str | None:
    """CloudTrail's ``[aws-cli/1.18.136 Python/3.8.5 ...]`` is the client ``aws-cli/1.18.136 ...``."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1].strip()
    return value or None


def attributes(r: VendorRecord) -> dict:
    """The attributes the Collector's AWS logs encoding extension writes for a CloudTrail record.

    CloudTrail is the busiest source and its field names never change case: read with plain
    dictionary look-ups rather than ``VendorRecord.get``."""
    d = r.data
    who = d.get("userIdentity")
    if not isinstance(who, dict):
        who = {}
    attrs = {
        "rpc.system": "aws-api",
        "rpc.service": text_of(d.get("eventSource")),
        "rpc.method": text_of(d.get("eventName")),
        "source.address": text_of(d.get("sourceIPAddress")),
        "user_agent.original": user_agent(text_of(d.get("userAgent"))),
        "aws.principal.arn": text_of(who.get("arn")),
        "aws.principal.id": text_of(who.get("principalId")),
        "aws.principal.type": text_of(who.get("type")),
        "aws.access_key.id": text_of(who.get("accessKeyId")),
        "aws.error.code": text_of(d.get("errorCode")),
        "aws.error.message": text_of(d.get("errorMessage")),
        "aws.request.parameters": d.get("requestParameters"),
        "aws.resources": d.get("resources"),
        "aws.cloudtrail.event_id": text_of(d.get("eventID")),
        "aws.request_id": text_of(d.get("requestID")),
        "aws.event.type": text_of(d.get("eventType")),
        "cloud.region": text_of(d.get("awsRegion")),
        "cloud.account.id": text_of(d.get("recipientAccountId")) or text_of(who.get("accountId")),
        # A call through a VPC endpoint names it and, since 2024, the account that owns it: an
        # instance credential used through another account's endpoint left its own VPC.
        "aws.vpc_endpoint.id": text_of(d.get("vpcEndpointId")),
        "aws.vpc_endpoint.account.id": text_of(d.get("vpcEndpointAccountId")),
    }
    # How the principal signed in, which decides who it is (identity/principals.classify_aws):
    # a console session is a person's; a role session opened through an OIDC provider says which.
    if d.get("sessionCredentialFromConsole") in ("true", True) or d.get("eventType") == "AwsConsoleSignIn":
        attrs["aws.session.from_console"] = "true"
    context = who.get("sessionContext")
    if isinstance(context, dict):
        federation = context.get("webIdFederationData")
        if isinstance(federation, dict):
            attrs["aws.session.web_identity_provider"] = text_of(federation.get("federatedProvider"))
    return present(attrs)


def map_record(r: VendorRecord) -> Mapped | Skipped:
    when = r.time("eventTime", "@timestamp")
    attrs = attributes(r)
    issued = None
    kind = attrs.get("aws.principal.type")
    if kind == "AWSService" and not attrs.get("aws.principal.arn"):
        session = r.text("responseElements.assumedRoleUser.arn") or _session_arn(
            r.text("requestParameters.roleArn"), r.text("requestParameters.roleSessionName"))
        service = r.text("userIdentity.invokedBy", "sourceIPAddress") or "an AWS service"
        if not session:
            # A service acting on its own account's behalf: no identity of ours did this.
            return Skipped(NAME, f"performed by {service} itself", when)
        key = r.text("responseElements.credentials.accessKeyId")
        attrs["aws.principal.arn"] = session
        # The service's name in sourceIPAddress and userAgent is no network and no client of
        # the session's: kept out of its baselines.
        attrs.pop("source.address", None)
        attrs.pop("user_agent.original", None)
        if key:
            attrs["aws.access_key.id"] = key
            issued = Issuance(key, session, service)
    elif attrs.get("rpc.method") in ISSUING and r.text("responseElements.credentials.accessKeyId"):
        # A principal assuming a role: the new key belongs to the session it opened.
        key = r.text("responseElements.credentials.accessKeyId")
        issued = Issuance(key, r.text("responseElements.assumedRoleUser.arn") or _session_arn(
            r.text("requestParameters.roleArn"), r.text("requestParameters.roleSessionName")) or "",
                          attrs.get("aws.principal.arn", ""), attrs.get("source.address"))
    if not attrs.get("aws.principal.arn") and kind == "WebIdentityUser" and r.text("userIdentity.userName"):
        # AssumeRoleWithWebIdentity names the federated subject only: for GitHub Actions
        # (repo:<org>/<repo>:ref:...) that is the CI job, owned by the repository.
        attrs["user.id"] = r.text("userIdentity.userName")
    if not attrs.get("aws.principal.arn") and kind == "SAMLUser" and r.text("userIdentity.userName"):
        # AssumeRoleWithSAML names the person the identity provider signed in.
        attrs["user.id"] = r.text("userIdentity.userName")
    if not attrs.get("aws.principal.arn") and kind == "IAMUser" and r.text("userIdentity.userName"):
        # Console sign-in steps (CheckMfa...) name the user without its ARN.
        attrs["aws.principal.arn"] = (f"arn:aws:iam::{r.text('userIdentity.accountId', 'recipientAccountId')}:"
                                      f"user/{r.text('userIdentity.userName')}")
    if not attrs.get("aws.principal.arn") and not attrs.get("user.id"):
        if r.text("userIdentity.invokedBy"):
            return Skipped(NAME, f"{r.text('eventType') or 'event'} by {r.text('userIdentity.invokedBy')}", when)
        return Skipped(NAME, f"no principal ARN (userIdentity type {r.text('userIdentity.type') or 'absent'})", when)
    if attrs.get("aws.access_key.id"):
        attrs["nhi.credential.id"] = attrs["aws.access_key.id"]
    return Mapped(NAME, attrs, when, record_id=r.text("eventID"), issued=issued)


def _session_arn(role_arn: str | None, session: str | None) -> str | None:
    """The session an ``AssumeRole`` opens, when the record does not say it (EC2 and Lambda
    record only the credentials): ``arn:aws:iam::1:role/path/r`` + ``s`` ->
    ``arn:aws:sts::1:assumed-role/r/s``."""
    if not role_arn or not session or ":role/" not in role_arn:
        return None
    head, _, path = role_arn.partition(":role/")
    partition_and_account = head.split(":iam:", 1)
    if len(partition_and_account) != 2:
        return None
    return f"{partition_and_account[0]}:sts:{partition_and_account[1]}:assumed-role/{path.rsplit('/', 1)[-1]}/{session}"
