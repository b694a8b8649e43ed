"""Time the sender does not control: a record stamped ahead of its arrival is judged at arrival
plus the allowed skew and marked ``nhi.time.skewed``, so a flood stamped months ahead cannot make
a settled identity look idle and push it out; a time no clock can hold is clamped, not a
traceback. Built from CloudTrail records in the vendor's schema, timed around the real clock."""

from __future__ import annotations

import time

from otel_processor.config import ProcessorConfig
from otel_processor.engine import EngineConfig
from otel_processor.pipeline import BatchProcessor
from otlp_builders import attrs_of, logs
from vendor_records import S, cloudtrail, send


def processor(max_identities: int = 200_000) -> BatchProcessor:
    p = BatchProcessor(ProcessorConfig(engine=EngineConfig(max_identities=max_identities)))
    p.events = []
    return p


def test_a_record_stamped_ahead_of_its_arrival_is_clamped_and_marked_and_one_on_time_is_not():
    now = time.time_ns()
    p = processor()
    out = send(p, [cloudtrail(now - 60 * S, "app-role", "prod/db"), cloudtrail(now + 86_400 * S, "app-role", "prod/db")])
    assert "nhi.time.skewed" not in out[0]
    assert out[1]["nhi.time.skewed"] is True
    # a sender cannot mark its own record
    forged = {"attrs": {"user.id": "svc-a", "event.category": "api", "nhi.time.skewed": True}, "time": now}
    request = logs({"service.name": "x"}, forged)
    p.process_logs(request)
    assert "nhi.time.skewed" not in attrs_of(request.resource_logs[0].scope_logs[0].log_records[0].attributes)


def test_a_time_no_clock_can_hold_is_clamped_not_a_traceback(caplog):
    p = processor()
    # CloudTrail as the Collector's AWS logs encoding maps it: attributes, the record's own time
    mapped = {"rpc.system": "aws-api", "rpc.service": "secretsmanager.amazonaws.com", "rpc.method": "GetSecretValue",
              "aws.principal.arn": "arn:aws:sts::111122223333:assumed-role/app-role/i-0abc",
              "source.address": "10.20.3.7", "user_agent.original": "aws-cli/2.15.0"}
    request = logs({"cloud.provider": "aws"}, *({"attrs": mapped, "time": t} for t in (2**63, 2**64 - 1, 2**63 - 1)))
    p.process_logs(request)
    out = [attrs_of(r.attributes) for r in request.resource_logs[0].scope_logs[0].log_records]
    assert [o.get("nhi.time.skewed") for o in out] == [True, True, True]
    assert all(o["nhi.identity.id"] == "workload:arn:aws:iam::111122223333:role/app-role" for o in out)
    assert "Traceback" not in caplog.text
    # a vendor body's own time, as far out as its format allows, is clamped alike
    body = cloudtrail(0, "app-role", "prod/db")
    body["eventTime"] = "9999-12-31T23:59:59Z"
    assert send(p, [body])[0]["nhi.time.skewed"] is True


def sweep_events(flood: bool) -> list:
    """A settled role's history over three days up to an hour ago, optionally a flood of new
    identities stamped sixty days ahead (more than the state holds), then the role reads 40
    secrets it never read."""
    now = time.time_ns()
    p = processor(max_identities=60)
    start = now - 3 * 86_400 * S
    history = [cloudtrail(start + k * 1_800 * S, "deploy-role", f"prod/app/{k % 3}") for k in range(140)]
    for k in range(0, len(history), 50):
        send(p, history[k:k + 50])
    if flood:  # identities that warm up (21 records over 25 hours each), all sixty days ahead
        ahead = now + 60 * 86_400 * S
        bodies = [cloudtrail(ahead + r * 4_500 * S + k * S, f"flood-role-{k}", "prod/x", "203.0.113.9")
                  for k in range(80) for r in range(21)]  # one at a time, as probation holds few
        for k in range(0, len(bodies), 400):
            send(p, bodies[k:k + 400])
    attack = now - 30 * 60 * S
    send(p, [cloudtrail(attack + k * 5 * S, "deploy-role", f"prod/all/{k}") for k in range(40)])
    return [(e.identity.id, e.version, e.findings) for e in p.events if "deploy-role" in e.identity.id]


def test_a_flood_stamped_months_ahead_does_not_push_a_settled_identity_out():
    quiet = sweep_events(flood=False)
    assert quiet, "the sweep raises an event on its own"
    assert sweep_events(flood=True) == quiet


def test_without_the_clamp_the_same_flood_would_have_pushed_it_out(monkeypatch):
    """The twin: with the skew allowance set beyond the flood's lead, the flood's time is taken as
    given, the role looks idle for sixty days and is evicted, and what rests on its history (a
    new target, its busiest window) is lost: only the history-free sweep fact is left."""
    original = EngineConfig.__init__

    def wide(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.max_future_skew_s = 400 * 86_400.0

    monkeypatch.setattr(EngineConfig, "__init__", wide)
    findings = [f for _, _, found in sweep_events(flood=True) for f in found]
    assert findings and all(f.startswith("first_sight.") for f in findings)
    assert any(not f.startswith("first_sight.") for _, _, found in sweep_events(flood=False) for f in found)
