"""The provisioned Grafana dashboard: generated from deploy/grafana/generate_dashboard.py, with
the panels issue 5 asks for, each querying only metrics the code exports."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

from worker.metrics import exported_names

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "etims-relay.json"
GENERATOR = ROOT / "deploy" / "grafana" / "generate_dashboard.py"
REQUIRED_PANELS = {
    "Throughput by kind and outcome",
    "OSCU latency p50 / p95 / p99",
    "Backlog by state",
    "Oldest pending age",
    "Dead letters",
    "Blocked branches",
    "Retries by reason",
    "KRA result codes",
    "Workers up",
}
#: Identifiers in PromQL that are functions or keywords, not metric names.
PROMQL_WORDS = {
    "sum", "max", "min", "count", "by", "rate", "increase", "histogram_quantile", "le",
    "without", "on", "or", "and", "vector", "avg",
}  # fmt: skip


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_dashboard", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def test_committed_dashboard_is_what_the_generator_writes() -> None:
    assert DASHBOARD.read_text() == generator().render()


def test_dashboard_has_the_required_panels_on_the_provisioned_datasource() -> None:
    board = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in board["panels"]}
    assert titles >= REQUIRED_PANELS
    assert all(p["targets"] for p in board["panels"])
    assert {p["datasource"]["uid"] for p in board["panels"]} == {"prometheus"}
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "uid: prometheus" in datasource


def test_every_metric_a_panel_queries_is_exported_by_the_code() -> None:
    exported = exported_names() | {"up"}
    queried = set()
    for expr in exprs():
        without_labels = re.sub(r"\{[^}]*\}", "", expr)
        without_legends = re.sub(r"\[[^\]]*\]", "", without_labels)
        words = set(re.findall(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\b", without_legends))
        by_groups = set(re.findall(r"by \(([^)]*)\)", without_legends))
        grouped = {w.strip() for group in by_groups for w in group.split(",")}
        queried |= words - PROMQL_WORDS - grouped
    assert queried, "no metric found in the panels"
    assert queried <= exported, sorted(queried - exported)
    assert {"etims_oscu_call_duration_seconds_bucket", "etims_jobs", "up"} <= queried
