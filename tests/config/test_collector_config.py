"""collector-config.yaml and collector-config-scaleout.yaml: well formed, and wired to the processor's defaults."""

from __future__ import annotations

import os

import pytest
import yaml

from otel_processor.config import DEFAULT_FORWARD, DEFAULT_LISTEN_GRPC
from otel_processor.identity.rules import IDENTITY_KEYS

from paths import ROOT
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


# What the load-balancing exporter accepts as routing_key per signal (contrib v0.152: the
# switch in trace_exporter.go, log_exporter.go and metrics_exporter.go; anything else is refused at
# start-up with "unsupported routing_key").
ROUTING_KEYS = {
    "traces": {"traceID", "service", "attributes", ""},
    "logs": {"service", "traceID", "resource", "attributes", ""},
    "metrics": {"service", "resource", "metric", "streamID", "attributes", ""},
}
CREDENTIAL_KEYS = ("http.request.header.x-api-key", "http.request.header.authorization")


def test_scaleout_routing_keys_are_what_the_exporter_accepts_for_each_signal():
    config = load("collector-config-scaleout.yaml")
    for pipeline_id, pipeline in config["service"]["pipelines"].items():
        signal = pipeline_id.split("/")[0]
        for name in pipeline["exporters"]:
            if name.split("/")[0] in ("load_balancing", "loadbalancing"):
                lb = config["exporters"][name]
                key = lb.get("routing_key", "")
                assert key in ROUTING_KEYS[signal], f"{pipeline_id}: {name} routing_key {key!r} is refused for {signal}"
                if key == "attributes":
                    assert lb.get("routing_attributes"), f"{name}: routing_key attributes needs routing_attributes"
    assert {p.split("/")[0] for p in config["service"]["pipelines"]} == {"traces", "logs", "metrics"}


def test_scaleout_routes_by_every_identity_deciding_attribute_and_hashes_credentials():
    config = load("collector-config-scaleout.yaml")
    lb = config["exporters"]["load_balancing/nhi"]
    assert lb["routing_key"] == "attributes" and lb["routing_attributes"] == ["nhi.route.key"]
    replicas = lb["resolver"]["static"]["hostnames"]
    assert len(replicas) >= 2 and all(h.endswith(":" + DEFAULT_LISTEN_GRPC.split(":")[-1]) for h in replicas)
    assert not any(h.startswith(("127.", "localhost")) for h in replicas)
    route = config["processors"]["transform/route"]
    statements = route["log_statements"][0]["statements"]
    assert route["trace_statements"][0]["statements"] == statements
    text = "\n".join(statements)
    for key in IDENTITY_KEYS:
        assert f'attributes["{key}"]' in text, f"{key} does not route"
    for key in CREDENTIAL_KEYS:
        uses = [s for s in statements if s.startswith("set(") and f'attributes["{key}"]' in s.split(" where ")[0]]
        assert uses and all(f'SHA256(attributes["{key}"])' in s for s in uses), f"{key} would route in clear"
    for pipeline_id, pipeline in config["service"]["pipelines"].items():
        if pipeline_id.split("/")[0] in ("traces", "logs"):
            procs = pipeline["processors"]
            assert procs.index("transform/route") < procs.index("batch")


@pytest.mark.parametrize("name", ["collector-config.yaml", "collector-config-scaleout.yaml"])
def test_every_sending_queue_is_kept_on_disk(name):
    config = load(name)
    storages = {k for k in config.get("extensions") or {} if k.split("/")[0] == "file_storage"}
    assert storages and set(config["service"]["extensions"]) >= storages
    for exporter_name, exporter in config["exporters"].items():
        if exporter_name.split("/")[0] == "debug":
            continue
        queue = exporter.get("sending_queue")
        assert queue and queue.get("enabled") and queue.get("storage") in storages, f"{exporter_name}: queue in memory"
