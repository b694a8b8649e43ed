"""Backfills are routine: replaying the simulated days a second time into the same warm `serve`
(event time jumping back days) raises no event on any identity, over real OTLP/gRPC; the first
replay raised its attacks' events, so the second pass had something to repeat."""

from __future__ import annotations

from otel_processor.config import ProcessorConfig, ServiceConfig
from otel_processor.hosts.serve.service import Service
from simulator.replay import replay
from otlp_builders import attrs_of
from worlds import requests_of


def test_the_same_days_replayed_again_into_a_warm_service_raise_nothing_new(sink, week):
    attacked = {i for label in week.labels if label.kind == "attack" for i in label.identity_ids}
    svc = ServiceConfig(listen_grpc="127.0.0.1:0", listen_http=None, listen_admin=None, forward=sink.endpoint)
    service = Service(ProcessorConfig(service=svc, state_dir=None)).start()
    try:
        endpoint = f"127.0.0.1:{service.grpc_port}"
        replay(requests_of(week.records), endpoint, 0.0, len(week.records), False)
        first = sink.convergence_events()
        assert {_identity(e) for e in first} & attacked
        replay(requests_of(week.records), endpoint, 0.0, len(week.records), False)
        second = sink.convergence_events()[len(first):]
    finally:
        service.stop(grace=5)
    assert [(_identity(e), attrs_of(e.attributes)["nhi.convergence.findings"]) for e in second] == []


def _identity(record) -> str:
    return attrs_of(record.attributes)["nhi.identity.id"]
