"""Fault rules fire as configured: per endpoint, N times or with a seeded probability."""

from __future__ import annotations

import pytest

from simulator.faults import Fault, FaultKind, FaultRegistry


def test_times_limits_a_rule_to_its_endpoint() -> None:
    registry = FaultRegistry()
    registry.add(kind="result_code", endpoint="saveTrnsSalesOsdc", times=2, code="990")
    assert registry.plan("selectNoticeList").action is None
    plans = [registry.plan("saveTrnsSalesOsdc") for _ in range(3)]
    assert [p.action for p in plans] == [FaultKind.RESULT_CODE, FaultKind.RESULT_CODE, None]
    assert registry.fired["result_code"] == 2


def test_probability_is_reproducible_with_a_seed() -> None:
    def run() -> list[bool]:
        registry = FaultRegistry(seed=7)
        registry.add(kind="drop", probability=0.3)
        return [registry.plan("saveItem").action is FaultKind.DROP for _ in range(200)]

    first = run()
    assert first == run()
    assert 30 < sum(first) < 90


def test_latency_adds_up_and_one_action_wins() -> None:
    registry = FaultRegistry(latency_ms=10)
    registry.add(kind="latency", ms=100, when="before")
    registry.add(kind="latency", ms=200)
    registry.add(kind="http_error", status=503)
    registry.add(kind="drop")
    plan = registry.plan("saveItem")
    assert (plan.before_s, plan.after_s) == (pytest.approx(0.1), pytest.approx(0.21))
    assert (plan.action, plan.status) == (FaultKind.HTTP_ERROR, 503)
    assert registry.fired["drop"] == 0


def test_clear_and_remove() -> None:
    registry = FaultRegistry()
    first = registry.add(kind="drop")
    registry.add(kind="lost_answer")
    assert registry.remove(first) is True
    assert [f["kind"] for f in registry.list()] == ["lost_answer"]
    assert registry.clear() == 1
    assert registry.plan("saveItem").is_plain


@pytest.mark.parametrize(
    "raw",
    [
        {"kind": "explode"},
        {"endpoint": "*"},
        {"kind": "drop", "times": -1},
        {"kind": "drop", "probability": 1.5},
        {"kind": "http_error", "status": 42},
        {"kind": "latency", "when": "during"},
        {"kind": "drop", "surprise": 1},
        ["not", "an", "object"],
    ],
)
def test_bad_fault_json_is_refused(raw: object) -> None:
    with pytest.raises(ValueError):
        Fault.from_json(raw)
