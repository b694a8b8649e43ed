"""collector-config.yaml and collector-config-scaleout.yaml: well formed, and wired to the processor's defaults."""

from __future__ import annotations

import os

import pytest
import yaml

from otel_processor.config import DEFAULT_FORWARD, DEFAULT_LISTEN_GRPC
from otel_processor.identity.rules import IDENTITY_KEYS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("receivers", "processors", "exporters")


def load(name):
    with open(os.path.join(ROOT, name)) as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("name", ["collector-config.yaml", "collector-config-scaleout.yaml"])
def test_every_referenced_component_is_defined_and_used(name):
    config = load(name)
    pipelines = config["service"]["pipelines"]
    used = {kind: set() for kind in KINDS}
    for pipeline_id, pipeline in pipelines.items():
        assert pipeline_id.split("/")[0] in ("traces", "logs", "metrics"), pipeline_id
        assert pipeline.get("receivers") and pipeline.get("exporters"), pipeline_id
        for kind in KINDS:
            for component in pipeline.get(kind, []):
                assert component in (config.get(kind) or {}), f"{pipeline_id}: {component} is not defined"
                used[kind].add(component)
        if "memory_limiter" in (config.get("processors") or {}) and pipeline_id.endswith("/in"):
            assert pipeline["processors"][0] == "memory_limiter", "memory_limiter must come first"
    for kind in KINDS:
        assert set(config.get(kind) or {}) == used[kind], f"defined but unused {kind}"


def test_ports_line_up_with_the_processor_defaults():
    config = load("collector-config.yaml")
    to_processor = config["exporters"]["otlp_grpc/nhi"]
    assert to_processor["endpoint"] == DEFAULT_LISTEN_GRPC
    assert to_processor["sending_queue"]["enabled"] and to_processor["retry_on_failure"]["enabled"]
    assert config["receivers"]["otlp/enriched"]["protocols"]["grpc"]["endpoint"] == DEFAULT_FORWARD
    pipelines = config["service"]["pipelines"]
    for signal in ("traces", "logs", "metrics"):
        assert pipelines[f"{signal}/in"]["exporters"] == ["otlp_grpc/nhi"]
        assert pipelines[f"{signal}/out"]["receivers"] == ["otlp/enriched"]
    # the front receiver and the enriched receiver must not collide
    front = config["receivers"]["otlp"]["protocols"]
    assert front["grpc"]["endpoint"].split(":")[-1] != DEFAULT_FORWARD.split(":")[-1]


def test_scaleout_routes_by_every_identity_deciding_attribute():
    config = load("collector-config-scaleout.yaml")
    lb = config["exporters"]["load_balancing/nhi"]
    assert lb["routing_key"] == "resource"
    replicas = lb["resolver"]["static"]["hostnames"]
    assert len(replicas) >= 2 and all(h.endswith(":" + DEFAULT_LISTEN_GRPC.split(":")[-1]) for h in replicas)
    assert config["processors"]["groupbyattrs/identity"]["keys"] == ["nhi.route.key"]
    route = config["processors"]["transform/route"]
    statements = "\n".join(route["log_statements"][0]["statements"])
    assert route["trace_statements"][0]["statements"] == route["log_statements"][0]["statements"]
    for key in IDENTITY_KEYS:
        assert f'attributes["{key}"]' in statements, f"{key} does not route"
    for pipeline in config["service"]["pipelines"].values():
        procs = pipeline["processors"]
        assert procs.index("transform/route") < procs.index("groupbyattrs/identity") < procs.index("batch")
