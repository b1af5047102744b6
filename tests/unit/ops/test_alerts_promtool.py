"""The alert rules in deploy/prometheus/ are valid, behave as their unit tests say, and only
query metrics the code exports. promtool comes from Debian's ``prometheus`` package
(scripts/ensure-tools.sh installs it); a missing promtool fails, never skips."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from worker.metrics import exported_names

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "etims-alerts.yml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
#: Series Prometheus itself makes.
PROMETHEUS_OWN = {"up"}
REQUIRED_ALERTS = {
    "EtimsOldestPendingOverSla",
    "EtimsDeadLetter",
    "EtimsBranchBlocked",
    "EtimsStalled",
    "EtimsOscuErrorRatioHigh",
    "EtimsRateLimitSurge",
    "EtimsWorkerDown",
    "EtimsDeviceDeactivated",
}


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run scripts/ensure-tools.sh (Debian package prometheus)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(rate(x[5m])\n"
    )
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    assert RULE_TESTS, "no promtool rule tests found"
    for test_file in RULE_TESTS:
        result = promtool("test", "rules", test_file.name, cwd=test_file.parent)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_every_required_alert_exists_and_at_least_four_have_unit_tests() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    assert alerts >= REQUIRED_ALERTS
    tested = set()
    for test_file in RULE_TESTS:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    tested.add(check["alertname"])
    assert len(tested & REQUIRED_ALERTS) >= 4, tested


def test_alerts_only_query_metrics_the_code_exports() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    exported = exported_names() | PROMETHEUS_OWN
    for group in groups:
        for rule in group["rules"]:
            # Series names only: label matchers ({etims_component="worker"}) are not metrics.
            expr = re.sub(r"\{[^}]*\}", "", rule["expr"])
            names = set(re.findall(r"\b(etims_[a-z0-9_]+|up)\b", expr))
            assert names, rule["alert"]
            assert names <= exported, (rule["alert"], names - exported)
