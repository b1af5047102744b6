"""The optional Prometheus Operator component (deploy/k8s/monitoring/): its PrometheusRule is
generated from the one rules file and up to date; its ServiceMonitors cover every metrics
Service and set the label the alerts and the dashboard select on."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType
from typing import Any

import yaml

from tests.deploy.deploy_support import DEPLOY, load_yaml_documents

MONITORING = DEPLOY / "k8s" / "monitoring"
RULES = DEPLOY / "prometheus" / "etims-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "etims-relay.json"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_prometheusrule", MONITORING / "generate_prometheusrule.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_prometheusrule_is_what_the_generator_writes() -> None:
    committed = (MONITORING / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert committed == generator().render(), (
        "stale: run python deploy/k8s/monitoring/generate_prometheusrule.py"
    )


def test_prometheusrule_carries_the_rules_file_groups() -> None:
    (rule,) = load_yaml_documents(MONITORING / "prometheusrule.yaml")
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_a_changed_rule_makes_the_committed_file_stale() -> None:
    changed = RULES.read_text().replace("> 3600", "> 7200")
    assert changed != RULES.read_text()
    assert generator().render(changed) != (MONITORING / "prometheusrule.yaml").read_text()


def test_component_lists_its_resources() -> None:
    (kustomization,) = load_yaml_documents(MONITORING / "kustomization.yaml")
    assert kustomization["kind"] == "Component"
    assert set(kustomization["resources"]) == {"servicemonitor.yaml", "prometheusrule.yaml"}
    assert all((MONITORING / name).is_file() for name in kustomization["resources"])


def _services() -> list[dict[str, Any]]:
    found = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        found += [d for d in load_yaml_documents(path) if d.get("kind") == "Service"]
    return found


def _selects(monitor: dict[str, Any], service: dict[str, Any]) -> bool:
    labels = service["metadata"].get("labels", {})
    selector = monitor["spec"]["selector"]
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_service_monitors_scrape_workers_beat_and_intake_with_the_component_label() -> None:
    monitors = load_yaml_documents(MONITORING / "servicemonitor.yaml")
    scraped: dict[str, str] = {}
    for monitor in monitors:
        (endpoint,) = monitor["spec"]["endpoints"]
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "etims_component"
        for service in _services():
            ports = {p["name"] for p in service["spec"]["ports"]}
            if _selects(monitor, service) and endpoint["port"] in ports:
                scraped[service["metadata"]["name"]] = relabel["replacement"]
    assert scraped == {
        "etims-relay-worker-metrics": "worker",
        "etims-relay-beat-metrics": "worker",
        "etims-relay-intake": "intake",
    }


def test_alerts_and_dashboard_select_targets_by_label_not_by_job_name() -> None:
    rules = RULES.read_text()
    assert 'job="' not in rules
    assert 'up{etims_component="worker"}' in rules
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "job" and 'etims_component="worker"' in variable["definition"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    up_queries = [e for e in exprs if "up{" in e]
    assert up_queries and all('job=~"$job"' in e for e in up_queries)
    assert not any('job="' in e for e in exprs)


def test_every_scrape_config_of_compose_sets_the_component_label() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    prometheus = yaml.safe_load(compose["configs"]["prometheus_config"]["content"])
    labels = {}
    for job in prometheus["scrape_configs"]:
        (relabel,) = job["relabel_configs"]
        labels[job["job_name"]] = (relabel["target_label"], relabel["replacement"])
    assert labels == {
        "etims-intake": ("etims_component", "intake"),
        "etims-worker": ("etims_component", "worker"),
    }


def test_pods_carry_the_component_label_for_annotation_discovery() -> None:
    expected = {
        "etims-relay-worker": "worker",
        "etims-relay-beat": "worker",
        "etims-relay-intake": "intake",
    }
    found = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in load_yaml_documents(path):
            if doc.get("kind") == "Deployment":
                labels = doc["spec"]["template"]["metadata"]["labels"]
                found[doc["metadata"]["name"]] = labels.get("etims_component")
    assert found == expected
