"""The GitHub audit log: audit-log streaming (to S3, Azure, Splunk...) and the REST export
(``GET /orgs/{org}/audit-log``, ``/enterprises/{e}/audit-log``), both JSON objects with
``action``, ``actor``, ``@timestamp`` (milliseconds) or ``created_at``, ``_document_id``.

Who acted: the **token** when the record says one was used (``programmatic_access_type``,
``token_id`` or ``hashed_token``): an ``api_key`` identity named by ``token_id`` (else by the
``hashed_token``, already a hash), owned by ``actor``. A personal access token is not its owner:
it is used by scripts and integrations, and stolen without its owner. GitHub Apps and ``[bot]``
actors are service accounts; anything else is ``user.id`` = ``actor``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..model import API_KEY, SERVICE_ACCOUNT
from .record import IdentityHint, Issuance, Mapped, Skipped, VendorRecord, present

NAME = "github"
IAM_PREFIXES = ("personal_access_token.", "oauth_access.", "oauth_authorization.", "public_key.", "deploy_key.",
                "org.add_member", "org.update_member", "org.remove_member", "org.add_outside_collaborator",
                "repo.add_member", "repo.update_member", "team.", "integration_installation.",
                "org_credential_authorization.", "business.add_admin", "org.update_default_repository_permission",
                "protected_branch.", "repository_secret_scanning", "hook.", "secret.", "environment.")
TOKEN_ISSUING = ("personal_access_token.create", "personal_access_token.request_created",
                 "personal_access_token.access_granted", "oauth_access.create", "oauth_authorization.create")


class TokenIds:
    """``hashed_token`` -> ``token_id``, learnt from records that carry both (bounded). Some
    records of a token carry only its hash; without this one token would be two identities."""

    def __init__(self, capacity: int = 50_000):
        self.capacity = capacity
        self._map: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def learn(self, hashed: str | None, token_id: str | None) -> None:
        if hashed and token_id:
            with self._lock:
                self._map[hashed] = token_id
                self._map.move_to_end(hashed)
                if len(self._map) > self.capacity:
                    self._map.popitem(last=False)

    def token_of(self, hashed: str | None) -> str | None:
        return self._map.get(hashed) if hashed else None


TOKEN_IDS = TokenIds()


def map_record(r: VendorRecord) -> Mapped | Skipped:
    when = r.time("@timestamp", "created_at", "timestamp")
    action = r.text("action")
    if not action:
        return Skipped(NAME, "no action", when)
    actor = r.text("actor", "user")
    repo = r.text("repo", "repository")
    iam = action.startswith(IAM_PREFIXES)
    attrs = {
        "event.category": "iam" if iam else "api",
        "event.action": action,
        "event.outcome": "success",
        "source.address": r.text("actor_ip"),
        "user_agent.original": r.text("user_agent"),
        "geo.country.iso_code": r.text("actor_location.country_code"),
        "cloud.resource_id": repo or r.text("org", "business"),
        "github.programmatic_access_type": r.text("programmatic_access_type"),
    }
    token_id, hashed = r.text("token_id"), r.text("hashed_token")
    TOKEN_IDS.learn(hashed, token_id)
    token = token_id or TOKEN_IDS.token_of(hashed) or hashed
    issuing = action.startswith(TOKEN_ISSUING)
    identity = None
    issued = None
    # Creating a token is done by its owner (in the browser); the record's token_id is then the
    # token created, not one used, unless a token did the creating.
    used_a_token = not issuing or bool(r.text("programmatic_access_type"))
    if token and used_a_token:
        attrs["nhi.credential.id"] = token
    if actor and (actor.endswith("[bot]") or r.text("actor_is_bot") in ("true", "True")
                  or r.text("programmatic_access_type") == "GitHub App server-to-server token"):
        # An app's installation tokens live an hour: the app is the identity, the token its credential.
        identity = IdentityHint(SERVICE_ACCOUNT, actor, "github.actor", group=f"github:{r.text('org') or 'apps'}")
    elif token and used_a_token:
        identity = IdentityHint(API_KEY, f"github-token:{token}", "github.hashed_token" if token == hashed
                                else "github.token_id", owner=actor, group=f"github:{r.text('org') or 'tokens'}")
    elif actor:
        attrs["user.id"] = actor
    else:
        return Skipped(NAME, f"{action} without actor or token", when)
    if issuing:
        created = r.text("token_id", "hashed_token", "oauth_access_id", "fingerprint")
        if created:
            attrs["nhi.credential.created"] = created
            issued = Issuance(created, f"{API_KEY}:github-token:{created}", actor or "", attrs["source.address"])
    return Mapped(NAME, present(attrs), when, identity,
                  record_id=r.text("_document_id", "document_id"), issued=issued)
