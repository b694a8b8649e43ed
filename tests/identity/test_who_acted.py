"""Delegated access: an application reading a mailbox with a user's permissions is the app, with
the user beside it; the user reading her own mail stays the user. A session into a pod is observed
once. (Every other who-acted case is a row of docs/identity.md, checked by test_identity_table.py.)"""

from __future__ import annotations

import uuid

from otel_processor.anyvalue import set_value
from otel_processor.engine import Engine, EngineConfig
from otel_processor.inputs.dispatch import read_vendor
from otel_processor.pipeline import BatchProcessor
from vendor_records import attributed, record_of

from otlp_builders import attrs_of, logs


def test_an_app_reading_a_mailbox_for_a_user_carries_the_user_beside_it_and_her_own_reads_do_not():
    out = {name: attributed(record_of(f"tests/testdata/identity/{fixture}.json"))
           for name, fixture in (("app", "m365-app-reads-mail-for-user"), ("own", "m365-user-reads-own-mail-owa"))}
    assert (out["app"]["nhi.identity.kind"], out["app"]["nhi.identity.on_behalf_of"]) == ("oauth_app", "cfo@corp.example")
    assert out["own"]["nhi.identity.id"] == "human:cfo@corp.example" and "nhi.identity.on_behalf_of" not in out["own"]


def test_an_impersonated_service_account_acts_and_whoever_borrowed_it_stands_beside_it():
    federated = ("principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/github/"
                 "subject/repo:acme/api:ref:refs/heads/main")
    for fixture in ("gcp-federated-ci-mints-token-for-service-account", "gcp-service-account-acts-for-federated-ci"):
        record = record_of(f"tests/testdata/identity/{fixture}.json")
        assert attributed(record)["nhi.identity.id"] == "service_account:deploy-bot@acme-prod.iam.gserviceaccount.com"
        assert read_vendor(record).related == (federated,), fixture
        assert related_of(record) == f"workload:{federated}", fixture  # what an event names beside it
    # a name no service account can have (a megabyte) names nobody: the chain's account acts
    record = record_of("tests/testdata/identity/gcp-federated-ci-mints-token-for-service-account.json")
    record["protoPayload"]["request"]["name"] = "projects/-/serviceAccounts/" + "a" * 900_000 + "@p.iam.gserviceaccount.com"
    assert attributed(record)["nhi.identity.id"] == "service_account:deploy-bot@acme-prod.iam.gserviceaccount.com"
    # a mint naming the account only by its unique id leaves the caller as the actor
    record = record_of("tests/testdata/identity/gcp-person-mints-token-by-unique-id.json")
    assert attributed(record)["nhi.identity.id"] == "human:alice@corp.example" and read_vendor(record).related == ()


def related_of(body: dict) -> str | None:
    """The related identities the pipeline hands the engine with a vendor record's observation."""
    seen = []

    class Spy(Engine):
        def observe_unlocked(self, obs):
            seen.append(obs.details.get("nhi.identity.related") if obs.details else None)
            return super().observe_unlocked(obs)

    processor = BatchProcessor(engine=Spy(EngineConfig()))
    request = logs({"cloud.provider": "gcp"}, {"attrs": {}})
    set_value(request.resource_logs[0].scope_logs[0].log_records[0].body, body)
    processor.process_logs(request)
    assert len(seen) == 1
    return seen[0]


def test_a_sender_cannot_set_on_behalf_of_itself():
    request = logs({"service.name": "x"}, {"attrs": {"user.id": "svc-a", "event.category": "api",
                                                     "nhi.identity.on_behalf_of": "ceo@corp.example"}})
    BatchProcessor().process_logs(request)
    got = attrs_of(request.resource_logs[0].scope_logs[0].log_records[0].attributes)
    assert got["nhi.identity.id"] == "service_account:svc-a" and "nhi.identity.on_behalf_of" not in got


def test_a_session_into_a_pod_is_observed_when_it_opens_and_not_again_when_it_closes():
    opens = record_of("tests/testdata/identity/k8s-exec-opens.json")
    session = str(uuid.uuid4())  # the profile remembers opened sessions by audit id, process-wide
    opened = attributed({**opens, "auditID": session})
    closed = attributed({**opens, "auditID": session, "stage": "ResponseComplete"})
    assert opened["nhi.identity.id"] == "workload:system:serviceaccount:ci:runner" and "nhi.identity.id" not in closed
    # a policy that omits ResponseStarted: the close is all there is, and it is observed
    alone = attributed({**opens, "auditID": str(uuid.uuid4()), "stage": "ResponseComplete"})
    assert alone["nhi.identity.id"] == "workload:system:serviceaccount:ci:runner"



def test_a_megabyte_principal_and_key_are_bounded_before_anything_keeps_them(monkeypatch):
    """The AWS rule caches what it decided per (principal, type, key...): every argument is bounded
    first, or a sender could fill the cache with megabytes."""
    from otel_processor.identity import rules
    from otel_processor.identity.principals import MAX_PRINCIPAL

    seen = []
    real = rules.classify_aws
    monkeypatch.setattr(rules, "classify_aws", lambda *args: seen.append(args) or real(*args))
    huge = "arn:aws:iam::111122223333:user/" + "a/" * 500_000 + "deploy"
    request = logs({"service.name": "x"}, {"attrs": {"aws.principal.arn": huge, "aws.principal.type": "IAMUser",
                                                     "aws.access_key.id": "AKIA" + "B" * 1_000_000,
                                                     "rpc.method": "GetObject"}})
    BatchProcessor().process_logs(request)
    got = attrs_of(request.resource_logs[0].scope_logs[0].log_records[0].attributes)
    assert seen and all(len(a) <= 2 * MAX_PRINCIPAL for args in seen for a in args if isinstance(a, str))
    assert got["nhi.identity.id"] and len(got["nhi.identity.id"]) < 3 * MAX_PRINCIPAL
