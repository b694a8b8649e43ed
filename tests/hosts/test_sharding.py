"""Identity-affine scale-out: one replay split across two processor replicas by the routing key
of collector-config-scaleout.yaml gives the same detections as one instance.

The router here does what that config does: nhi.route.key (the identity-deciding record
attribute, else the resource's service.name; API keys hashed), hashed, picks the replica. The one documented exception is the
mailbox -> consent -> app chain: an app whose consenting mailbox was routed to the other replica
does not see the consent.
"""

from __future__ import annotations

import hashlib
import re

from otel_processor.config import ProcessorConfig, ServiceConfig
from simulator.sink import OtlpSink
from otel_processor.hosts.serve.service import Service
from simulator.bench import collect_events
from simulator.replay import replay
from simulator.scenarios import load_scenarios
from worlds import requests_of


ASSUMED_ROLE = re.compile(r"^arn:aws[a-z-]*:sts::([0-9]+):assumed-role/([^/]+)/.*$")


def route_key(a: dict, resource: dict | None = None) -> str | None:
    """What transform/route in collector-config-scaleout.yaml computes (same statements, same order)."""
    key = (resource or {}).get("service.name")
    for name in ("enduser.id", "user.id"):
        if a.get(name) is not None:
            key = a[name]
    if a.get("aws.principal.arn") is not None:
        key = ASSUMED_ROLE.sub(r"arn:aws:iam::\1:role/\2", a["aws.principal.arn"])
    for name in ("http.request.header.x-api-key", "http.request.header.authorization"):
        if a.get(name) is not None:
            key = hashlib.sha256(str(a[name]).encode()).hexdigest()  # OTTL SHA256
    if a.get("oauth.client.id") is not None and a.get("event.action") != "oauth.consent.granted":
        key = a["oauth.client.id"]
    if a.get("cicd.pipeline.name") is not None:
        key = f"{a.get('vcs.repository.url.full')}:{a['cicd.pipeline.name']}"
    for name in ("gen_ai.agent.name", "gen_ai.agent.id"):
        if a.get(name) is not None:
            key = a[name]
    return None if key is None else str(key)


def routing_key(record) -> str:
    """routing_key: attributes with routing_attributes [nhi.route.key]: "name=value|"."""
    key = route_key(record.attributes, dict(record.resource))
    return f"nhi.route.key={'' if key is None else key}|"


def replica_of(record, replicas: int) -> int:
    return int(hashlib.sha256(routing_key(record).encode()).hexdigest(), 16) % replicas


def run(streams) -> tuple[list, int, int]:
    with OtlpSink() as sink:
        sent = 0
        services = []
        try:
            for _ in streams:
                config = ProcessorConfig(service=ServiceConfig(listen_grpc="127.0.0.1:0", listen_admin="127.0.0.1:0", listen_http=None,
                                                               forward=sink.endpoint), state_dir=None)
                services.append(Service(config).start())
            for service, records in zip(services, streams):
                sent += replay(requests_of(records), f"127.0.0.1:{service.grpc_port}", progress=False)
        finally:
            for service in services:
                service.stop(grace=5)
        got = len(sink.spans()) + len(sink.telemetry_log_records())
        return collect_events(sink), sent, got


def test_two_replicas_detect_what_one_instance_detects(week):
    # 120 identities: each replica must see enough of each peer group to discount group changes
    # (a 60-identity fleet split in two leaves too few services per replica; see the config).
    world = week
    single, sent, got = run([world.records])
    assert sent == got == len(world.records)
    split = [[r for r in world.records if replica_of(r, 2) == k] for k in range(2)]
    assert all(split), "both replicas get traffic"
    sharded, sent2, got2 = run(split)
    assert sent2 == got2 == len(world.records)

    one = {e.identity_id for e in single}
    two = {e.identity_id for e in sharded}
    attacked = {i for label in world.labels if label.kind == "attack" for i in label.identity_ids}
    # The comparison means something only if one instance detects: every attack is seen.
    for label in world.labels:
        if label.kind == "attack":
            assert one & set(label.identity_ids), f"one instance missed {label.scenario}"
    assert one <= attacked, "one instance flags only attacked identities"
    # Every identity flagged by the sharded replicas is flagged by one instance, and vice versa,
    # except the identities of an attack whose evidence links two identities (a mailbox chain, a
    # grant then reads, a credential created by one and used by another): each replica holds
    # only its own identities' side of the link.
    linked = ("chain:", "first_sight.granted_bulk_read:", "first_sight.fresh_credential_use:")
    across = {e.identity_id for e in single + sharded if any(f.startswith(linked) for f in e.findings)}
    across |= {i for label in world.labels if across & set(label.identity_ids) for i in label.identity_ids}
    # And identities whose scenario sends some of their records as a vendor's audit record in the
    # body, in an otherwise attribute-shaped world: the scale-out router keys on attributes, so
    # those records may be routed apart from the identity's others (a deployment keeps one shape
    # per source; see collector-config-scaleout.yaml).
    shaped = {s.name for s in load_scenarios() if any(step.source not in ("", "otel") for step in s.steps)}
    across |= {i for label in world.labels if label.scenario in shaped for i in label.identity_ids}
    assert (one ^ two) <= across, (one ^ two) - across
    chained_apps = {e.identity_id for e in single if e.identity_id.startswith("oauth_app:") and e.related
                    and any(f.startswith("chain:") for f in e.findings)}
    mailboxes = {m for e in single if e.identity_id in chained_apps for m in e.related}
    assert mailboxes <= two, "the mailbox side of the chain is always seen"
