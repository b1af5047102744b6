"""Replay tooling through the real CLI, with real workers, PostgreSQL, Redis and the simulator.

The story ops live through: a till sent a sale with a mistyped item code; KRA refused it (910)
and its stock-out and stock master are blocked behind it. The operator looks at it, corrects
the payload, replays it, and everything reaches KRA in order. Every step is audited.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from producers import builders as b
from simulator.process import SimulatorProcess
from simulator.verify import verify_ledger
from tests.helpers import RelayEnv, WorkerPool, wait_until
from tests.integration.test_pipeline_workers import init_devices
from tests.workload import TIN, branch_workload, item_code
from worker.outbox.db import make_engine
from worker.outbox.models import jobs

pytestmark = pytest.mark.slow

TYPO = "KE2NTNO0000010"  # never registered at KRA


def mistyped_sale(key: str) -> list[dict[str, Any]]:
    """A sale of item 1 whose sale record (only) names an unregistered item code."""
    line = b.SaleLine(item_code(1), "Item 1", Decimal(2), Decimal("116"))
    records = b.sale_with_stock(
        TIN, "00", key, [line], trd_invc_no=f"{key}-TYPO", at=datetime.now(UTC)
    )
    records[0]["payload"]["itemList"][0]["itemCd"] = TYPO
    return records


def flat(text: str) -> str:
    """CLI text with rich's line wrapping undone."""
    return " ".join(text.split())


def states(relay: RelayEnv) -> dict[str, str]:
    engine = make_engine(relay.database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(jobs.c.idempotency_key, jobs.c.state)).all()
    engine.dispose()
    return {key: state for key, state in rows}


def settled(relay: RelayEnv) -> dict[str, str] | None:
    """Job states once none is still being worked on (read from the outbox directly)."""
    current = states(relay)
    active = {"pending", "in_flight", "retry_wait", "unknown"}
    return None if active & set(current.values()) else current


def test_dead_edit_replay_gets_the_sale_and_its_blocked_stock_jobs_accepted(
    relay_env: RelayEnv, workers: WorkerPool, simulator: SimulatorProcess
) -> None:
    # Given a branch whose mistyped sale KRA refused, with its stock jobs blocked behind it
    relay_env.extra["ETIMS_ACTOR"] = "ops:alice"
    init_devices(relay_env, ["00"])
    workers.start(1)
    relay_env.enqueue(branch_workload("00", 12) + mistyped_sale("00:typo"))
    after = wait_until(lambda: settled(relay_env), timeout=90, what="first pass settled")
    assert after["00:typo"] == "dead"
    assert after["00:typo:stock-out"] == "blocked"
    assert after[f"00:typo:stock-master:{item_code(1)}"] == "blocked"

    # When the operator lists dead letters and looks at the sale
    dead = json.loads(relay_env.cli("dead", "list", "--json", "--code", "910").stdout)
    assert [d["idempotency_key"] for d in dead] == ["00:typo"]
    job_id = dead[0]["id"]
    assert "not registered" in dead[0]["message"]
    assert json.loads(relay_env.cli("dead", "list", "--json", "--code", "999").stdout) == []
    shown = json.loads(relay_env.cli("dead", "show", str(job_id), "--json").stdout)
    assert shown["payload"]["itemList"][0]["itemCd"] == TYPO
    assert [a["result_code"] for a in shown["attempts"]] == ["910"]
    assert TYPO in shown["attempts"][0]["message"]
    text = relay_env.cli("dead", "show", str(job_id)).stdout
    assert "910" in text and TYPO in text

    # ... an invalid edit is refused and changes nothing
    bad = relay_env.cli(
        "dead", "edit", str(job_id), "--set", "itemList.0.qty=-3", "--reason", "x", check=False
    )
    assert bad.returncode == 1 and "invalid" in flat(bad.stderr)
    unchanged = json.loads(relay_env.cli("dead", "show", str(job_id), "--json").stdout)
    assert unchanged["payload"] == shown["payload"]

    # ... then corrects the item code and replays the sale
    relay_env.cli(
        "dead", "edit", str(job_id), "--set", f"itemList.0.itemCd={item_code(1)}",
        "--reason", "till typo in item code",
    )  # fmt: skip
    relay_env.cli("replay", str(job_id), "--reason", "item code fixed")

    # Then the sale and the stock jobs blocked behind it are all accepted, in order at KRA
    final = wait_until(
        lambda: (s := settled(relay_env)) and all(v == "accepted" for v in s.values()) and s,
        timeout=90,
        what="every job accepted after the replay",
    )
    assert final["00:typo:stock-out"] == "accepted"
    report = verify_ledger(simulator.ledger)
    assert report.ok, report.violations

    # ... replaying it again is refused: KRA signed it
    again = relay_env.cli("replay", str(job_id), check=False)
    assert again.returncode == 1 and "KRA already signed it" in flat(again.stderr)

    # ... and the audit log says who did what, when and why
    audit = json.loads(relay_env.cli("audit", "list", "--json").stdout)
    assert [(a["action"], a["job_id"], a["actor"], a["reason"]) for a in audit] == [
        ("replay", job_id, "ops:alice", "item code fixed"),
        ("edit", job_id, "ops:alice", "till typo in item code"),
    ]
    edit_entry = audit[1]
    assert edit_entry["details"]["changes"] == [
        {"path": "itemList.0.itemCd", "old": TYPO, "new": item_code(1)}
    ]


def test_skip_needs_a_reason_and_is_audited_and_branch_replay_by_code(
    relay_env: RelayEnv, workers: WorkerPool
) -> None:
    # Given two refused sales on one branch
    relay_env.extra["ETIMS_ACTOR"] = "ops:bob"
    init_devices(relay_env, ["00"])
    workers.start(1)
    relay_env.enqueue(branch_workload("00", 6) + mistyped_sale("00:a") + mistyped_sale("00:b"))
    wait_until(lambda: settled(relay_env), timeout=90, what="settled")
    dead = {d["idempotency_key"]: d["id"] for d in json.loads(
        relay_env.cli("dead", "list", "--json", "--branch", f"{TIN}/00").stdout
    )}  # fmt: skip
    assert set(dead) == {"00:a", "00:b"}

    # When skip is asked without a reason, or with a blank one, it is refused
    missing = relay_env.cli("skip", str(dead["00:a"]), check=False)
    assert missing.returncode == 2 and "--reason" in missing.stderr
    blank = relay_env.cli("skip", str(dead["00:a"]), "--reason", "  ", check=False)
    assert blank.returncode == 1 and "needs a reason" in flat(blank.stderr)
    assert states(relay_env)["00:a"] == "dead"

    # ... with a reason it is done, and audited
    relay_env.cli("skip", str(dead["00:a"]), "--reason", "sale voided at the till")
    assert states(relay_env)["00:a"] == "skipped"
    audit = json.loads(relay_env.cli("audit", "list", "--json", "--action", "skip").stdout)
    assert [(a["job_id"], a["actor"], a["reason"]) for a in audit] == [
        (dead["00:a"], "ops:bob", "sale voided at the till")
    ]

    # ... and replay --branch --code puts the remaining 910 back (it dies again: not fixed)
    out = relay_env.cli("replay", "--branch", f"{TIN}/00", "--code", "910", "--reason", "retry")
    assert f"[{dead['00:b']}]" in out.stdout
    assert states(relay_env)["00:b"] in ("pending", "in_flight", "dead")
    replays = json.loads(relay_env.cli("audit", "list", "--json", "--action", "replay").stdout)
    assert [a["job_id"] for a in replays] == [dead["00:b"]]
