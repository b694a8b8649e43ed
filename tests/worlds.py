"""The simulated weeks the end-to-end tests share: each built once per test process, not per test.

Requests hold five minutes of event time (``BATCH_SECONDS``) instead of the bench's minute: the
same records in a quarter of the requests, so a replay over gRPC costs a quarter of the round
trips. Detection does not depend on batching (``tests/engine/test_order.py`` checks reordering
within a request and across requests), and the bench runs both sizes with the same result.
"""

from __future__ import annotations

import functools

from simulator.encode import batches
from simulator.scenarios import load_scenarios
from simulator.world import World, build_world

BATCH_SECONDS = 300


@functools.lru_cache(maxsize=None)
def week() -> World:
    """Every packaged scenario in a 120-identity fleet after three days of history, as the
    contract's attributes: enough services per peer group to split it between two replicas."""
    return build_world(load_scenarios(), 120, 3, seed=7)


@functools.lru_cache(maxsize=None)
def vendor_week() -> World:
    """Another seed, smaller, with every record that has a vendor audit log in that log's shape."""
    return build_world(load_scenarios(), 80, 3, seed=11, shapes="vendor")


def requests_of(records, seconds: int = BATCH_SECONDS) -> list:
    """(signal, request, last event time) per request, as ``simulator.encode.batches`` gives them."""
    return list(batches(records, max_span_ns=seconds * 10**9))
