"""deploy/k8s/: valid per the Kubernetes OpenAPI schemas (strict), and true to the code.

kubernetes-validate ships the JSON schemas of each Kubernetes release in its wheel, so this
runs offline. We pin the oldest release we support; strict mode refuses unknown fields (a
typo'd ``livenessProbe`` key would otherwise be silently ignored by the API server).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet

from tests.deploy.deploy_support import (
    DEPLOY,
    SECRET_ENV,
    check_cli_argv,
    drain_stop_bound_s,
    load_settings,
    load_yaml_documents,
    settings_field,
)
from tests.deploy.intake_routes import intake_serves

#: The Kubernetes release the manifests are validated against (oldest supported).
K8S_VERSION = "1.30.0"
K8S_DIR = DEPLOY / "k8s"
MANIFESTS = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def _all_resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in MANIFESTS for doc in load_yaml_documents(path)]


RESOURCES = _all_resources()


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in RESOURCES if doc["kind"] == kind}


def _containers(kind: str = "Deployment") -> dict[str, dict[str, Any]]:
    found = {}
    for name, doc in _by_kind(kind).items():
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        found[name] = container
    return found


def _deployment(component: str) -> dict[str, Any]:
    return _by_kind("Deployment")[f"etims-relay-{component}"]


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    "resource", [doc for _, doc in RESOURCES], ids=[f"{p.name}:{d['kind']}" for p, d in RESOURCES]
)
def test_manifest_is_valid_for_pinned_kubernetes(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_typo() -> None:
    broken = copy.deepcopy(_deployment("intake"))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["livenessprobe"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_migration_job() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    expected = {p.name for p in MANIFESTS} - {"migrate-job.yaml"}
    assert set(kustomization["resources"]) == expected


# --------------------------------------------------------------------------- roles


def test_beat_is_a_single_replica_recreated_never_doubled() -> None:
    beat = _deployment("beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    args = _containers()["etims-relay-beat"]["args"]
    assert args[0] == "worker" and "--beat" in args
    assert args[args.index("--concurrency") + 1] == "1"
    beats = [n for n, c in _containers().items() if "--beat" in c["args"]]
    assert beats == ["etims-relay-beat"]
    assert not any(
        pdb["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component") == "beat"
        for pdb in _by_kind("PodDisruptionBudget").values()
    )


def test_migration_job_runs_db_upgrade() -> None:
    job = _by_kind("Job")["etims-relay-migrate"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize(
    "name", [*_containers(), "etims-relay-migrate"], ids=lambda n: n.removeprefix("etims-relay-")
)
def test_container_args_are_real_cli_commands(name: str) -> None:
    containers = {**_containers(), **_containers("Job")}
    check_cli_argv(containers[name]["args"])


def test_workers_drain_without_beat_and_have_a_pdb() -> None:
    worker = _deployment("worker")
    assert "--beat" not in _containers()["etims-relay-worker"]["args"]
    labels = worker["spec"]["template"]["metadata"]["labels"]
    pdbs = [
        pdb
        for pdb in _by_kind("PodDisruptionBudget").values()
        if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(pdbs) == 1 and pdbs[0]["spec"]["maxUnavailable"] == 1


# --------------------------------------------------------------------------- probes


def _probe_path(container: dict[str, Any], probe: str) -> str:
    return str(container[probe]["httpGet"]["path"])


def test_intake_probes_use_healthz_and_readyz_which_the_app_serves() -> None:
    intake = _containers()["etims-relay-intake"]
    assert _probe_path(intake, "livenessProbe") == "/healthz"
    assert _probe_path(intake, "startupProbe") == "/healthz"
    assert _probe_path(intake, "readinessProbe") == "/readyz"
    assert intake_serves("/healthz") == 200
    assert intake_serves("/readyz") not in (404, 405)
    assert intake_serves("/no-such-probe") == 404  # the check can fail


def test_probe_ports_are_declared_container_ports() -> None:
    for name, container in _containers().items():
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in container:
                continue
            handler = container[probe].get("httpGet") or container[probe].get("tcpSocket")
            assert handler["port"] in ports, (name, probe)
        assert "livenessProbe" in container, name


def test_worker_liveness_is_the_metrics_port_the_worker_is_told_to_open() -> None:
    for name in ("etims-relay-worker", "etims-relay-beat"):
        container = _containers()[name]
        args = container["args"]
        port = int(args[args.index("--metrics-port") + 1])
        declared = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert declared[container["livenessProbe"]["tcpSocket"]["port"]] == port


def test_scrape_annotations_match_the_served_ports() -> None:
    for name, deployment in _by_kind("Deployment").items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        ports = {p["containerPort"] for p in _containers()[name]["ports"]}
        assert int(annotations["prometheus.io/port"]) in ports, name
    assert intake_serves("/metrics") not in (404, 405), "the intake app serves no /metrics"


# --------------------------------------------------------------------------- resources + security


@pytest.mark.parametrize("name", [*_containers(), "etims-relay-migrate"])
def test_requests_limits_and_non_root(name: str) -> None:
    containers = {**_containers(), **_containers("Job")}
    container = containers[name]
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][key]), (name, key)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/etims-relay", "/tmp"} <= mounts, "writable state dir on a read-only root"
    pods = [
        d["spec"]["template"]["spec"]
        for _, d in RESOURCES
        if d["metadata"]["name"] == name and d["kind"] in ("Deployment", "Job")
    ]
    assert pods[0]["securityContext"]["runAsNonRoot"] is True


def test_services_select_existing_pods_on_declared_ports() -> None:
    pods = [
        (doc["spec"]["template"]["metadata"]["labels"], doc["spec"]["template"]["spec"])
        for _, doc in RESOURCES
        if doc["kind"] == "Deployment"
    ]
    for name, service in _by_kind("Service").items():
        selector = service["spec"]["selector"].items()
        matched = [spec for labels, spec in pods if selector <= labels.items()]
        assert matched, f"Service {name} selects no pod"
        port_names = {p["name"] for spec in matched for c in spec["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (name, port)


# --------------------------------------------------------------------------- config + secrets


def _config() -> dict[str, str]:
    return dict(_by_kind("ConfigMap")["etims-relay-config"]["data"])


def _secret() -> dict[str, str]:
    return dict(_by_kind("Secret")["etims-relay-secrets"]["stringData"])


def test_every_env_key_is_a_real_settings_field() -> None:
    keys = [*_config(), *_secret()]
    assert [k for k in keys if settings_field(k) is None] == []
    for container in [*_containers().values(), *_containers("Job").values()]:
        refs = {(k, v["name"]) for ref in container["envFrom"] for k, v in ref.items()}
        assert refs == {
            ("configMapRef", "etims-relay-config"),
            ("secretRef", "etims-relay-secrets"),
        }
        for env in container.get("env", []):
            assert settings_field(env["name"]) is not None, env["name"]


def test_secret_holds_only_placeholders_and_all_secret_settings() -> None:
    secret = _secret()
    assert set(SECRET_ENV) <= set(secret)
    assert not set(SECRET_ENV) & set(_config()), "secrets never go in the ConfigMap"
    for key, value in secret.items():
        assert "CHANGE-ME" in value, f"{key} must be a placeholder, not a real value"
    with pytest.raises(ValueError):
        Fernet(secret["ETIMS_SECRET_KEY"].encode())  # the placeholder cannot run


def test_config_loads_and_grace_period_outlives_a_drain() -> None:
    env = {**_config(), **_secret(), "ETIMS_SECRET_KEY": Fernet.generate_key().decode()}
    settings = load_settings(env)  # runs the validators (lease vs. round trip, tax rates)
    bound = drain_stop_bound_s(settings)
    for component in ("worker", "beat"):
        grace = _deployment(component)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > bound, (component, grace, bound)
