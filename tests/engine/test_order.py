"""The incidents raised for a stream do not depend on delivery order: the same held-back week in
request order, with every request's resources reversed, and with each request delayed by a
random amount of up to five minutes of event time (bounded lateness) raises incidents on the same
identities. With resources reversed the events are identical, ids and scores included. Under
delays an incident opened from a late record may be named by other evidence, and its rule may
differ (a stolen secret's first use judged as a new network when the attacker's other calls,
delivered first, already made that network known), so the identities are compared."""

from __future__ import annotations

import random

import pytest

from otel_processor.config import ProcessorConfig
from otel_processor.pipeline import BatchProcessor
from simulator.encode import reversed_resources
from worlds import requests_of

pytestmark = pytest.mark.slow
LATENESS_S = 300


@pytest.fixture(scope="module")
def requests(week):
    return requests_of(week.records)


def run(requests) -> set[tuple]:
    processor = BatchProcessor(ProcessorConfig(state_dir=None))
    events = []
    for signal, request, _ in requests:
        copy = type(request)()
        copy.CopyFrom(request)  # the processor enriches in place; each run starts from the original
        events += (processor.process_traces if signal == "traces" else processor.process_logs)(copy).events
    return {(e.identity.id, e.rule_name, e.convergence_id, e.version, round(e.score, 4)) for e in events}


def delayed(requests, seed: int):
    """Each request held back by up to LATENESS_S of event time, then delivered in that order."""
    rnd = random.Random(seed)
    keyed = sorted((last + rnd.randint(0, LATENESS_S) * 10**9, i) for i, (_, _, last) in enumerate(requests))
    return [requests[i] for _, i in keyed]


@pytest.fixture(scope="module")
def in_order(requests):
    found = run(requests)
    assert len({who for who, *_ in found}) >= 20, "the week must raise enough incidents to compare"
    return found


def test_reversed_resources_raise_identical_events(requests, in_order):
    assert run(list(reversed_resources(requests))) == in_order


@pytest.mark.parametrize("seed", [1, 2])
def test_bounded_delays_raise_incidents_on_the_same_identities(requests, in_order, seed):
    shuffled = delayed(requests, seed)
    assert [r[2] for r in shuffled] != [r[2] for r in requests], "the delays must reorder something"
    assert {who for who, *_ in run(shuffled)} == {who for who, *_ in in_order}
