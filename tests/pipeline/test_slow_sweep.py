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
