"""A slow sweep: secrets a settled role never read, one every 70 seconds, from its usual address
and client. Under the minutes-long sweep window, but counted per hour against the role's own
history of new targets it raises; a deploy role touching a few new secrets a day does not.
Built from CloudTrail records in the vendor's schema."""

from __future__ import annotations

import pytest

from otel_processor.pipeline import BatchProcessor
from vendor_records import S, cloudtrail, send

T0 = 1_762_041_600 * S  # 2025-11-02 00:00 UTC, a Sunday
DAY = 86_400 * S


def settled_role() -> BatchProcessor:
    """Three days of a role reading its three secrets every half hour."""
    p = BatchProcessor()
    p.events = []
    history = [cloudtrail(T0 + k * 1_800 * S, "deploy-role", f"prod/app/{k % 3}") for k in range(3 * 48)]
    for k in range(0, len(history), 48):
        send(p, history[k:k + 48])
    return p


def findings(p: BatchProcessor) -> list[str]:
    return [f for e in p.events for f in e.findings]


def test_a_slow_sweep_from_the_usual_place_raises():
    p = settled_role()
    start = T0 + 3 * DAY + 10 * 3_600 * S
    sweep = [cloudtrail(start + k * 70 * S, "deploy-role", f"prod/all/{k}") for k in range(45)]
    for k in range(0, len(sweep), 9):
        send(p, sweep[k:k + 9])
    assert any(f.startswith("first_sight.slow_sweep:") for f in findings(p)), findings(p)
    assert not any(f.startswith("first_sight.secret_sweep:") for f in findings(p))  # too slow for that one


@pytest.mark.look_alike_of("test_a_slow_sweep_from_the_usual_place_raises")
def test_a_deploy_role_touching_a_few_new_secrets_a_day_stays_quiet():
    p = settled_role()
    for day in range(3, 9):
        send(p, [cloudtrail(T0 + day * DAY + 9 * 3_600 * S + k * 600 * S, "deploy-role", f"prod/release-{day}/{k}")
                 for k in range(4)] +
                [cloudtrail(T0 + day * DAY + 12 * 3_600 * S + k * 1_800 * S, "deploy-role", f"prod/app/{k % 3}")
                 for k in range(12)])
    assert p.events == []


# -- a backfill: old logs loaded into a warm processor ------------------------------------------
def stranger_reads(start: int) -> list:
    """40 secrets the role never read, in five minutes, from an address it never used."""
    return [cloudtrail(start + k * 7 * S, "deploy-role", f"prod/other/{k}", address="203.0.113.50") for k in range(40)]


def test_the_same_sweep_at_the_identitys_present_raises():
    p = settled_role()
    send(p, stranger_reads(T0 + 3 * DAY))
    assert p.events


@pytest.mark.look_alike_of("test_the_same_sweep_at_the_identitys_present_raises")
def test_records_far_older_than_the_identitys_present_are_history_not_news():
    """The same records stamped two days before the role's latest (a backfill of old logs) join
    its history and raise nothing; the role's reads of them later are then no longer new."""
    p = settled_role()
    send(p, stranger_reads(T0 + DAY))
    assert p.events == []
    send(p, [cloudtrail(T0 + 3 * DAY + k * 60 * S, "deploy-role", f"prod/other/{k}") for k in range(5)])
    assert not any("first target" in f for f in findings(p))
