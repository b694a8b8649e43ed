"""Shared fixtures (real sockets on 127.0.0.1 only) and the ``both_builds`` marker.

The suite's folders mirror the package's rooms (``tests/engine`` tests ``otel_processor/engine``),
so ``pytest tests/engine`` runs the tests of one room. Tests in the rooms whose modules are
compiled (see ``setup.py``) are marked ``both_builds``: the README's test command runs them a
second time as plain Python (``NHI_PURE_PYTHON=1 pytest -m both_builds``); a test of the hosts,
the simulator or the config runs the same code either way and runs once.
"""

from __future__ import annotations

import os

import pytest

import worlds
from paths import TESTS
from simulator.sink import OtlpSink

BOTH_BUILDS_ROOMS = {"engine", "identity", "pipeline", "inputs", "outputs"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        room = os.path.relpath(str(item.path), TESTS).split(os.sep)[0]
        if room in BOTH_BUILDS_ROOMS:
            item.add_marker(pytest.mark.both_builds)


@pytest.fixture
def sink():
    """A real OTLP/gRPC receiver standing in for the downstream collector pipeline."""
    with OtlpSink() as s:
        yield s


@pytest.fixture(scope="session")
def week():
    return worlds.week()


@pytest.fixture(scope="session")
def vendor_week():
    return worlds.vendor_week()
