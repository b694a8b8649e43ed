"""Shared fixtures: real sockets on 127.0.0.1 only."""

from __future__ import annotations

import pytest

from simulator.sink import OtlpSink


@pytest.fixture
def sink():
    """A real OTLP/gRPC receiver standing in for the downstream collector pipeline."""
    with OtlpSink() as s:
        yield s
