"""deploy/Dockerfile and deploy/kubernetes/nhi-processor.yaml, parsed and held to what the service
does: the ports, probe paths and state directory they name are the ones it uses, the image runs
as a non-root user with the hot path compiled, the config in the ConfigMap loads.

No container runtime or cluster is reachable here (no Docker daemon, no registry for base images,
no API server for kubectl), so the files are checked as text and data; docs/deployment.md says how to run
each.
"""

from __future__ import annotations

import os
import re

import yaml

from otel_processor.config import DEFAULT_LISTEN_ADMIN, DEFAULT_LISTEN_GRPC, DEFAULT_LISTEN_HTTP, load_config
from otel_processor.identity.catalog import load_catalog
from otel_processor.outputs.exceptions import load_exceptions

from paths import ROOT
DOCKERFILE = os.path.join(ROOT, "deploy", "Dockerfile")
MANIFEST = os.path.join(ROOT, "deploy", "kubernetes", "nhi-processor.yaml")


def port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", open(DOCKERFILE).read())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word.upper(), rest.strip()))
    return stages


def test_the_image_is_multi_stage_compiled_and_runs_unprivileged():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    build_runs = " ".join(rest for word, rest in build if word == "RUN")
    assert "gcc" in build_runs and "pip install" in build_runs
    assert "compiled_modules()" in build_runs, "the build fails when the hot path did not compile"
    assert not any("gcc" in rest for word, rest in runtime if word == "RUN"), "no compiler in the runtime image"
    assert any(word == "COPY" and rest.startswith("--from=") for word, rest in runtime)
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    exposed = {int(p) for word, rest in runtime if word == "EXPOSE" for p in rest.split()}
    assert exposed == {port(DEFAULT_LISTEN_GRPC), port(DEFAULT_LISTEN_HTTP), port(DEFAULT_LISTEN_ADMIN)}
    health = yaml.safe_load(" ".join(rest for word, rest in runtime if word == "HEALTHCHECK").split("CMD", 1)[1])
    config_in_image = [rest.split()[-1] for word, rest in runtime if word == "COPY" and "container-config" in rest]
    assert health[:2] == ["nhi-processor", "healthcheck"] and health[-1] == config_in_image[0] == "/etc/nhi/config.yaml"
    container = load_config(os.path.join(ROOT, "deploy", "container-config.yaml")).service
    for listen in (container.listen_grpc, container.listen_http, container.listen_admin):
        assert listen.startswith("0.0.0.0:"), "a container must listen on 0.0.0.0"
    assert {port(x) for x in (container.listen_grpc, container.listen_http, container.listen_admin)} == exposed
    entry = [rest for word, rest in runtime if word == "ENTRYPOINT"]
    assert entry and yaml.safe_load(entry[-1]) == ["nhi-processor"]
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "NHI_STATE_DIR=/var/lib/nhi" in env


def manifest() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(open(MANIFEST)) if d]
    return {d["kind"]: d for d in docs}


def test_the_manifest_wires_probes_ports_state_and_config_to_what_the_service_uses(tmp_path):
    docs = manifest()
    assert set(docs) == {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service", "NetworkPolicy"}
    data = docs["ConfigMap"]["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    config = load_config(str(tmp_path / "config.yaml"))
    config.service.validate()
    load_catalog(config.catalog)
    load_exceptions(config.exceptions)

    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["otlp-grpc"] == port(config.service.listen_grpc)
    assert ports["otlp-http"] == port(config.service.listen_http)
    assert ports["admin"] == port(config.service.listen_admin)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    config_path = container["args"][container["args"].index("--config") + 1]
    assert os.path.dirname(config_path) == mounts["config"] and os.path.basename(config_path) in data
    assert mounts["state"] == config.state_dir
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert os.path.dirname(config.service.auth.bearer_tokens_file) == mounts["tokens"]
    assert volumes["tokens"]["secret"]["secretName"]

    security = pod["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert pod["terminationGracePeriodSeconds"] > config.service.shutdown_grace_s
    assert docs["Deployment"]["spec"]["replicas"] == 1 and docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"

    service_ports = {p["targetPort"] for p in docs["Service"]["spec"]["ports"]}
    assert service_ports == {"otlp-grpc", "otlp-http"}, "the admin port (no auth) stays out of the Service"
    assert docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]


def test_a_network_policy_closes_every_port_but_to_who_needs_it():
    """OTLP from the front Collector only, the admin port (whose /state says what an identity
    does) from Prometheus only, and nothing else in: every container port is named in exactly
    the rules meant for it."""
    docs = manifest()
    policy = docs["NetworkPolicy"]["spec"]
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert policy["podSelector"]["matchLabels"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    config = yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])["service"]
    allowed = {}
    for rule in policy["ingress"]:
        assert rule.get("from"), "a rule without from: admits every pod"
        for p in rule["ports"]:
            allowed.setdefault(p["port"], []).append(rule["from"])
    container_ports = {p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert set(allowed) == container_ports
    assert len(allowed[port(config["listen_admin"])]) == 1
    admin_from = allowed[port(config["listen_admin"])][0]
    assert all(port(config[k]) not in allowed or allowed[port(config[k])] != [admin_from]
               for k in ("listen_grpc", "listen_http"))
