"""What was done: a span or log record read as an observation (TELEMETRY.md section 2).

Works on plain dictionaries of the attributes that matter (``WANTED``), decoded once per record,
so that the engine never sees protobuf and the hot path never decodes attributes it ignores.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from ..model import FAILURE, SUCCESS, UNKNOWN_OUTCOME, Identity, Observation

# Attributes the resolver and the observation read. Everything else is never decoded.
WANTED = frozenset({
    "gen_ai.agent.id", "gen_ai.agent.name", "gen_ai.tool.name", "gen_ai.operation.name",
    "cicd.pipeline.name", "cicd.pipeline.run.id", "cicd.pipeline.task.name", "vcs.repository.url.full",
    "oauth.client.id", "oauth.scopes",
    "http.request.header.authorization", "http.request.header.x-api-key",
    "aws.principal.arn", "aws.principal.type", "aws.session.from_console", "aws.session.web_identity_provider",
    "aws.access_key.id", "aws.error.code", "aws.vpc_endpoint.id", "aws.vpc_endpoint.account.id",
    "aws.resources", "aws.request.parameters",
    "user.id", "enduser.id", "service.name", "service.namespace",
    "event.action", "event.category", "event.outcome", "event.name",
    "rpc.service", "rpc.method", "rpc.grpc.status_code",
    "db.operation.name", "db.collection.name", "db.namespace", "db.response.returned_rows",
    "http.request.method", "http.route", "url.template", "url.path",
    "http.response.status_code", "http.response.body.size", "error.type",
    "cloud.resource_id", "server.address", "messaging.destination.name",
    "messaging.batch.message_count",
    "client.address", "source.address", "network.peer.address", "user_agent.original",
    "geo.country.iso_code", "geo.locality.name",
    "email.from.address", "email.to.address",
    "process.command_line", "process.executable.name",
})

# The read attributes naming a CI pipeline (``rec`` holds only WANTED keys).
_CICD_KEYS = frozenset(k for k in WANTED if k.startswith("cicd."))
_CICD_PIPELINE_KEYS = frozenset(k for k in WANTED if k.startswith("cicd.pipeline."))

# Besides the identity keys, what resolution needs to know about a log record: whether it is an
# audit record about another actor, whether it is a consent, and how an AWS principal signed in.
RESOLUTION_CONTEXT_KEYS = frozenset({"service.name", "service.namespace", "event.action", "event.category",
                                     "rpc.service", "rpc.method", "event.name",
                                     # how an AWS principal signed in decides its kind before its name
                                     "aws.principal.type", "aws.access_key.id", "aws.session.from_console",
                                     "aws.session.web_identity_provider"})

_ID_SEGMENT = re.compile(
    r"/(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|[A-Za-z0-9_-]{24,})(?=/|$)"
)
_AUTHZ_CODES = re.compile(r"accessdenied|unauthori[sz]ed|forbidden|notauthorized|authorizationerror",
                          re.IGNORECASE)
_CLOUDTRAIL_AUTH = frozenset({"ConsoleLogin", "AssumeRole", "AssumeRoleWithSAML",
                              "AssumeRoleWithWebIdentity", "GetSessionToken", "GetFederationToken",
                              "GetRoleCredentials"})
_IAM_PREFIXES = ("Create", "Delete", "Attach", "Put", "Detach", "Update", "Add", "Remove")
_CATEGORY_SIGNAL = {"authentication": "auth", "email": "email", "iam": "iam", "api": "app",
                    "web": "app", "database": "app"}
_RESOURCE_PARAMS = ("secretId", "name", "bucketName", "roleArn", "instanceId")
CONSENT_ACTION = "oauth.consent.granted"
AUDIT_CATEGORIES = frozenset({"authentication", "iam", "email"})
DETAIL_KEYS = ("oauth.client.id", "oauth.scopes", "email.to.address", "email.from.address",
               "process.command_line", "process.executable.name", "gen_ai.tool.name",
               "http.response.status_code", "aws.access_key.id", "aws.vpc_endpoint.id",
               "aws.vpc_endpoint.account.id",
               # what vendor profiles (inputs/) add: credential facts and the identities involved
               "nhi.credential.id", "nhi.credential.created", "nhi.credential.issued_to",
               "nhi.credential.issued_by", "nhi.target.identity", "nhi.identity.related", "nhi.identity.alias",
               "messaging.batch.message_count",
               # the source's own id of the record (CloudTrail eventID, Kubernetes auditID...):
               # evidence for records that have no trace id
               "nhi.record.id", "aws.cloudtrail.event_id", "event.id")


# Every text an observation keeps is at most this long: work per record stays bounded whatever
# a sender puts in an attribute (a 1 MB route costs what a 1 KB one does).
MAX_TEXT = 1024


def clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT]


def fold_ids(path: str) -> str:
    """``/users/12345/orders/9f86d081884c7d65`` -> ``/users/{id}/orders/{id}``."""
    return _ID_SEGMENT.sub("/{id}", clip(path))


def as_text(value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, list):
        return clip(",".join(str(v) for v in value[:32])) if value else None
    return clip(str(value))


def _first_arn(resources) -> str | None:
    """CloudTrail ``resources``: a list of {ARN|arn, ...} maps, a list of strings, or JSON text."""
    if isinstance(resources, str):
        if len(resources) > 65_536:
            return None
        try:
            resources = json.loads(resources)
        except (ValueError, RecursionError):
            return resources if resources.startswith("arn:") else None
    if isinstance(resources, dict):
        resources = [resources]
    if isinstance(resources, list):
        for item in resources:
            if isinstance(item, dict):
                arn = item.get("ARN") or item.get("arn")
                if arn:
                    return str(arn)
            elif isinstance(item, str) and item.startswith("arn:"):
                return item
    return None


def _param_target_text(params: str) -> str | None:
    if len(params) > 65_536:  # request parameters this large name no resource we read
        return None
    return _param_target_json(params) if len(params) <= 4096 else _param_target_parsed(params)


@lru_cache(maxsize=8192)
def _param_target_json(params: str) -> str | None:
    return _param_target_parsed(params)


def _param_target_parsed(params: str) -> str | None:
    try:
        return _param_target(json.loads(params))
    except (ValueError, RecursionError):
        return None


def _param_target(params) -> str | None:
    if isinstance(params, str):
        return _param_target_text(params)
    if isinstance(params, dict):
        for key in _RESOURCE_PARAMS:
            v = params.get(key)
            if v:
                return str(v)
    return None


def is_cloudtrail(rec: dict) -> bool:
    svc = rec.get("rpc.service")
    return bool(rec.get("aws.principal.arn") or (isinstance(svc, str) and svc.endswith("amazonaws.com")))


def log_signal(rec: dict, res: dict, event_name: str | None) -> str:
    category = rec.get("event.category")
    if isinstance(category, list):
        category = category[0] if category else None
    if category == "process":
        if not _CICD_KEYS.isdisjoint(rec) or not _CICD_KEYS.isdisjoint(res):
            return "ci"
        return "app"
    if category in _CATEGORY_SIGNAL:
        return _CATEGORY_SIGNAL[category]
    method = rec.get("rpc.method")
    if method and is_cloudtrail(rec):
        method = str(method)
        if method in _CLOUDTRAIL_AUTH:
            return "auth"
        if method == "CreateAccessKey" or (
            str(rec.get("rpc.service", "")).startswith("iam.") and method.startswith(_IAM_PREFIXES)
        ):
            return "iam"
        return "app"
    if rec.get("cicd.pipeline.name") or res.get("cicd.pipeline.name"):
        return "ci"
    return "app"


def span_signal(rec: dict, res: dict) -> str:
    if not _CICD_PIPELINE_KEYS.isdisjoint(rec):
        return "ci"
    if rec.get("gen_ai.operation.name") in ("execute_tool", "invoke_agent"):
        return "agent"
    return "app"


def _outcome_from_status_code(code) -> tuple[str, str | None] | None:
    try:
        code = int(code)
    except (TypeError, ValueError):
        return None
    if code >= 500:
        return FAILURE, "server"
    if code in (401, 403):
        return FAILURE, "authz"
    if code >= 400:
        return FAILURE, "other"
    return SUCCESS, None


def log_outcome(rec: dict) -> tuple[str, str | None]:
    error = rec.get("aws.error.code")
    if error:
        return FAILURE, "authz" if _AUTHZ_CODES.search(str(error)[:256]) else "other"
    http = _outcome_from_status_code(rec.get("http.response.status_code"))
    outcome = rec.get("event.outcome")
    if outcome == "failure":
        if http is not None and http[0] == FAILURE:
            return http
        reason = str(rec.get("error.type") or "")
        return FAILURE, "authz" if _AUTHZ_CODES.search(reason[:256]) else "other"
    if outcome == "success":
        return SUCCESS, None
    if http is not None:
        return http
    return (SUCCESS, None) if is_cloudtrail(rec) else (UNKNOWN_OUTCOME, None)


def span_outcome(rec: dict, status_code: int) -> tuple[str, str | None]:
    http = _outcome_from_status_code(rec.get("http.response.status_code"))
    if http is not None and http[0] == FAILURE:
        return http
    error = rec.get("error.type")
    if status_code == 2 or error:  # STATUS_CODE_ERROR
        reason = str(error or "")
        if _AUTHZ_CODES.search(reason[:256]):
            return FAILURE, "authz"
        grpc_code = rec.get("rpc.grpc.status_code")
        if grpc_code in (7, 16):  # PERMISSION_DENIED, UNAUTHENTICATED
            return FAILURE, "authz"
        if grpc_code in (14, 4) or reason in ("timeout", "unavailable"):
            return FAILURE, "server"
        return FAILURE, "other"
    return SUCCESS, None


def log_action(rec: dict, event_name: str | None) -> str:
    action = rec.get("event.action")
    if action:
        return clip(str(action))
    svc, method = rec.get("rpc.service"), rec.get("rpc.method")
    if method:
        return clip(f"{svc}/{method}" if svc else str(method))
    return clip(event_name) if event_name else "log"


def span_action(rec: dict, span_name: str) -> str:
    return clip(_span_action(rec, span_name))


def _span_action(rec: dict, span_name: str) -> str:
    tool = rec.get("gen_ai.tool.name")
    if tool:
        return f"tool:{tool}"
    svc, method = rec.get("rpc.service"), rec.get("rpc.method")
    if method:
        return f"{svc}/{method}" if svc else str(method)
    op = rec.get("db.operation.name")
    if op:
        coll = rec.get("db.collection.name")
        return f"{op} {coll}" if coll else str(op)
    verb = rec.get("http.request.method")
    if verb:
        route = rec.get("http.route") or rec.get("url.template")
        if not route:
            path = rec.get("url.path")
            route = fold_ids(str(path)) if path else ""
        return f"{verb} {clip(str(route))}".rstrip()
    return span_name or "span"


def target(rec: dict, res: dict, server_span: bool) -> str | None:
    found = _target(rec, res, server_span)
    return clip(found) if found is not None else None


def _target(rec: dict, res: dict, server_span: bool) -> str | None:
    v = rec.get("cloud.resource_id")
    if v:
        return str(v)
    if "aws.resources" in rec:
        arn = _first_arn(rec["aws.resources"])
        if arn:
            return arn
    if "aws.request.parameters" in rec:
        t = _param_target(rec["aws.request.parameters"])
        if t:
            return t
    for key in ("server.address", "rpc.service", "db.namespace", "db.collection.name"):
        v = rec.get(key)
        if v:
            if key == "server.address" and rec.get("url.path"):
                return f"{v}{_path_prefix(str(rec['url.path']))}"
            return str(v)
    path = rec.get("url.path")
    if path:
        return _path_prefix(str(path))
    v = rec.get("messaging.destination.name")
    if v:
        return str(v)
    command = rec.get("process.command_line")
    if command:
        # What a CI step or process ran: its first three words (tool, subcommand, object), so
        # that "kubectl get secrets" and "docker build" are targets a job does or does not reach.
        return " ".join(clip(str(command)).split()[:3])
    if server_span:
        name = res.get("service.name")
        if name:
            return str(name)
    return None


def _path_prefix(path: str) -> str:
    """The first two segments of a path, ids folded: the resource family a call reaches."""
    path = clip(path)
    parts = path.split("/", 3)
    return _folded("/".join(parts[:3]) if len(parts) > 3 else path)


@lru_cache(maxsize=16_384)
def _folded(path: str) -> str:
    # Folding is per segment, so folding the first two segments equals taking them from the
    # folded path; they recur far more than whole paths do, which keeps this cache useful.
    return fold_ids(path)


def volume(rec: dict) -> float:
    for key in ("http.response.body.size", "db.response.returned_rows", "messaging.batch.message_count"):
        v = rec.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
    return 1.0


def details(rec: dict) -> dict[str, str]:
    """Only the values chain and sequence logic need, only when present."""
    out: dict[str, str] = {}
    for key in DETAIL_KEYS:
        if key in rec:
            text = as_text(rec[key])
            if text is not None:
                out[key] = text
    if "nhi.record.id" not in out:
        record_id = out.get("aws.cloudtrail.event_id") or out.get("event.id")
        if record_id:
            out["nhi.record.id"] = record_id
    if "nhi.credential.id" not in out and "aws.access_key.id" in out:
        out["nhi.credential.id"] = out["aws.access_key.id"]  # the contract's credential id for AWS
    arn = rec.get("aws.principal.arn")
    if isinstance(arn, str) and ":assumed-role/" in arn:
        out["aws.session"] = arn  # the role session (instance id, run id): one holder of the key
    to_addr, from_addr = out.get("email.to.address"), out.get("email.from.address")
    if to_addr and from_addr and "@" in from_addr:
        sender_domain = from_addr.rsplit("@", 1)[1].lower()
        external = any(a.strip().rsplit("@", 1)[-1].lower() != sender_domain
                       for a in to_addr.split(",") if "@" in a)
        out["email.external"] = "true" if external else "false"
    return out


def _text(value) -> str | None:
    """``as_text`` for the common case of a string attribute."""
    if value.__class__ is str:
        return (value if len(value) <= MAX_TEXT else value[:MAX_TEXT]) or None
    return as_text(value)


def observe(identity: Identity, rec: dict, res: dict, signal: str, action: str, time_ns: int,
            outcome: tuple[str, str | None], server_span: bool, trace_id: bytes,
            span_id: bytes) -> Observation:
    """The observation of one record (positional arguments: it is called once per record)."""
    get = rec.get
    address = get("client.address") or get("source.address") or get("network.peer.address")
    return Observation(
        identity,
        time_ns,
        signal,
        action,
        target(rec, res, server_span),
        _text(address),
        _text(get("user_agent.original")),
        _text(get("geo.country.iso_code")),
        _text(get("geo.locality.name")),
        outcome[0],
        outcome[1],
        volume(rec),
        trace_id,
        span_id,
        details(rec) if (signal != "app" or "aws.principal.arn" in rec or "nhi.credential.id" in rec
                         or "nhi.record.id" in rec) else {},
    )
