"""Generate deploy/grafana/dashboards/etims-relay.json.

Run ``python deploy/grafana/generate_dashboard.py`` after changing a panel.

Written as code so that each panel is one line saying what it shows and which query feeds it;
the JSON is committed, and tests/unit/ops/test_metrics_dashboard.py checks that the file is what
this script produces and that every metric a panel queries is one the code exports.

Counters are per process and summed over targets; the database gauges are the same on every
target and are combined with ``max`` (see worker/metrics.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards" / "etims-relay.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
WIDTH = 12
#: Worker targets: every deployment labels them etims_component="worker" (compose relabels,
#: the Kubernetes ServiceMonitor, the systemd scrape example); ``$job`` narrows to the scrape
#: jobs picked in the dashboard's "job" variable, whatever a deployment names them.
WORKERS = 'etims_component="worker", job=~"$job"'
#: The "job" template variable: the scrape jobs that have worker targets (All by default).
JOB_VARIABLE = {
    "name": "job",
    "label": "worker scrape job",
    "type": "query",
    "datasource": DATASOURCE,
    "definition": 'label_values(up{etims_component="worker"}, job)',
    "query": {"query": 'label_values(up{etims_component="worker"}, job)', "refId": "job"},
    "refresh": 2,
    "includeAll": True,
    "allValue": ".*",
    "multi": True,
    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    "sort": 1,
}
HEIGHT = 8


def target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    *,
    unit: str = "short",
    kind: str = "timeseries",
    stack: bool = False,
) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    if kind == "timeseries":
        custom = {"drawStyle": "line", "fillOpacity": 20 if stack else 0}
        if stack:
            custom["stacking"] = {"mode": "normal", "group": "A"}
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(queries)],
    }


def quantile(q: float, metric: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[5m])))"


PANELS = [
    panel(
        "Throughput by kind and outcome",
        "Jobs decided per second (accepted, retry, dead, parked, superseded), summed over workers.",
        [("sum by (kind, outcome) (rate(etims_job_outcomes_total[5m]))", "{{kind}} {{outcome}}")],
        unit="ops",
        stack=True,
    ),
    panel(
        "OSCU latency p50 / p95 / p99",
        "Wall time of one OSCU call, all endpoints.",
        [
            (quantile(0.5, "etims_oscu_call_duration_seconds"), "p50"),
            (quantile(0.95, "etims_oscu_call_duration_seconds"), "p95"),
            (quantile(0.99, "etims_oscu_call_duration_seconds"), "p99"),
        ],
        unit="s",
    ),
    panel(
        "Backlog by state",
        "Jobs not accepted yet, by state (DB gauge, same on every target: max).",
        [("sum by (state) (max by (state, kind) (etims_jobs))", "{{state}}")],
        stack=True,
    ),
    panel(
        "Oldest pending age",
        "Oldest job not yet accepted, overall and for the worst branches.",
        [
            ("max(etims_oldest_pending_age_seconds)", "overall"),
            ("max by (branch) (etims_branch_oldest_pending_age_seconds)", "{{branch}}"),
        ],
        unit="s",
    ),
    panel(
        "Dead letters",
        "Jobs dead now (DB) and new dead letters per hour by kind and KRA code.",
        [
            ('sum(max by (kind) (etims_jobs{state="dead"}))', "dead now"),
            (
                "sum by (kind, code) (increase(etims_job_dead_letters_total[1h]))",
                "{{kind}} {{code}}",
            ),
        ],
    ),
    panel(
        "Blocked branches",
        "Branches parked for an operator or holding blocked jobs, and for how long.",
        [
            ("max by (reason) (etims_branches_stuck)", "{{reason}}"),
            ("max by (reason) (etims_branch_stuck_max_age_seconds)", "{{reason}} longest (s)"),
        ],
    ),
    panel(
        "Retries by reason",
        "Sends scheduled again per second: transient, rate_limited, unknown, sequence.",
        [("sum by (reason) (rate(etims_job_retries_total[5m]))", "{{reason}}")],
        unit="ops",
        stack=True,
    ),
    panel(
        "KRA result codes",
        "OSCU answers per second by KRA resultCd (none: no envelope was read).",
        [("sum by (code) (rate(etims_oscu_calls_total[5m]))", "{{code}}")],
        unit="ops",
        stack=True,
    ),
    panel(
        "Enqueue to accepted p95 by kind",
        "How long a job takes from enqueue to KRA's acceptance.",
        [(quantile(0.95, "etims_job_enqueue_to_accepted_seconds", "kind"), "{{kind}}")],
        unit="s",
    ),
    panel(
        "Workers up",
        "Worker metrics targets Prometheus can scrape.",
        [(f"sum(up{{{WORKERS}}})", "up"), (f"count(up{{{WORKERS}}})", "targets")],
        kind="stat",
    ),
    panel(
        "Stock masters coalesced",
        "Stock masters superseded per second (not sent: a later one of the item carries "
        "the balance), and jobs accepted per accepted sale, less stock-outs merged into "
        "another's send (the OSCU writes a sale costs).",
        [
            (
                'sum(rate(etims_job_outcomes_total{kind="stock_master", '
                'outcome="superseded"}[5m]))',
                "superseded/s",
            ),
            (
                # a stock-out merged into another's send is an accepted job but no write
                '(sum(rate(etims_job_outcomes_total{outcome="accepted"}[5m])) - '
                'sum(rate(etims_stock_outs_merged_total{outcome="accepted"}[5m]) or vector(0))) / '
                'sum(rate(etims_job_outcomes_total{kind="sale", outcome="accepted"}[5m]))',
                "writes per sale",
            ),
        ],
    ),
    panel(
        "Stock-outs merged per second and stock-outs per merged send",
        "Stock-outs accepted inside an earlier stock-out's insertStockIO per second (each a "
        "write saved; ETIMS_COALESCE__STOCK_IO), and how many stock-outs one merged send "
        "carries, the carrier included.",
        [
            (
                'sum(rate(etims_stock_outs_merged_total{outcome="accepted"}[5m]))',
                "merged/s",
            ),
            (
                '1 + sum(rate(etims_stock_outs_merged_total{outcome="accepted"}[5m])) / '
                'sum(rate(etims_merged_sends_total{outcome="accepted"}[5m]))',
                "stock-outs per merged send",
            ),
        ],
    ),
    panel(
        "Lease takeovers and webhooks",
        "Drains that lost their branch to another worker; webhook deliveries by outcome.",
        [
            ("sum(increase(etims_lease_takeovers_total[15m]))", "lease takeovers"),
            ("sum by (outcome) (rate(etims_webhook_deliveries_total[5m]))", "webhook {{outcome}}"),
        ],
    ),
    panel(
        "Notices and devices",
        "Unread KRA notices; devices flagged by pushed events (deactivated, expiring...).",
        [
            ("max(etims_notices_unread)", "unread notices"),
            ("max by (event) (etims_devices_flagged)", "{{event}}"),
        ],
        kind="stat",
    ),
]


def dashboard() -> dict[str, Any]:
    panels = []
    for index, item in enumerate(PANELS):
        placed = dict(item, id=index + 1)
        placed["gridPos"] = {
            "h": HEIGHT,
            "w": WIDTH,
            "x": (index % 2) * WIDTH,
            "y": (index // 2) * HEIGHT,
        }
        panels.append(placed)
    return {
        "uid": "etims-relay",
        "title": "etims-relay",
        "description": "Is every branch's work reaching KRA? (docs/operations-metrics.md)",
        "tags": ["etims", "kra"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [JOB_VARIABLE]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {OUT}\n")
