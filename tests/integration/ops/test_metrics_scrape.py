"""Scrape each worker's ``--metrics-port`` during a real run and compare with the database.

Real processes: two ``etims-relay worker`` (threads pool) on Redis, PostgreSQL outbox, the
simulator as KRA with a few 990 answers. One branch flows (with one sale KRA refuses: dead,
its stock jobs blocked); another has no device, so it parks with its jobs pending.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from producers import builders as b
from simulator.process import SimulatorProcess
from tests.helpers import RelayEnv, wait_until
from tests.integration.ops.conftest import MetricsWorkers, scrape, total
from tests.integration.test_pipeline_workers import init_devices
from tests.workload import TIN, branch_workload
from worker.metrics import GAUGE_STATES
from worker.outbox.db import make_engine
from worker.outbox.models import attempts, branches, jobs

pytestmark = pytest.mark.slow

ACTIVE = ("pending", "in_flight", "retry_wait", "unknown")
KINDS = ("item", "sale", "credit_note", "stock_io", "stock_master")


def ghost_sale(bhf_id: str, key: str) -> list[dict[str, Any]]:
    """A sale of an item never registered at KRA (910), with its stock-out and stock master."""
    line = b.SaleLine("KE2NTNO9999999", "Ghost", Decimal(1), Decimal("116"))
    return b.sale_with_stock(
        TIN, bhf_id, key, [line], trd_invc_no=f"{bhf_id}-GHOST", at=datetime.now(UTC)
    )


def db_snapshot(relay: RelayEnv) -> dict[str, Any]:
    engine = make_engine(relay.database_url)
    with engine.connect() as conn:
        by_state_kind = Counter(
            {
                (s, k): int(n)
                for s, k, n in conn.execute(
                    select(jobs.c.state, jobs.c.kind, func.count()).group_by(
                        jobs.c.state, jobs.c.kind
                    )
                )
            }
        )
        outcomes = Counter(
            {
                (o, c): int(n)
                for o, c, n in conn.execute(
                    select(attempts.c.outcome, attempts.c.result_code, func.count()).group_by(
                        attempts.c.outcome, attempts.c.result_code
                    )
                )
            }
        )
        oldest = conn.execute(
            select(func.min(jobs.c.created_at)).where(jobs.c.state.in_(ACTIVE))
        ).scalar()
        parked = conn.execute(
            select(branches.c.tin, branches.c.bhf_id).where(branches.c.parked_reason.is_not(None))
        ).all()
        active_00 = conn.execute(
            select(func.count()).where(jobs.c.bhf_id == "00", jobs.c.state.in_(ACTIVE))
        ).scalar_one()
    engine.dispose()
    return {
        "jobs": by_state_kind,
        "attempts": outcomes,
        "oldest": oldest,
        "parked": [f"{t}/{b_}" for t, b_ in parked],
        "active_00": active_00,
    }


def test_worker_metrics_match_the_database(
    relay_env: RelayEnv, metrics_workers: MetricsWorkers, simulator: SimulatorProcess
) -> None:
    # Given two workers exposing metrics, KRA answering 990 to a few calls, and jobs for a
    # flowing branch (one sale KRA refuses) and for a branch without a device
    relay_env.extra["ETIMS_METRICS__DB_CACHE_S"] = "0"
    init_devices(relay_env, ["00"])
    simulator.add_fault(endpoint="*", kind="result_code", code="990", times=6)
    metrics_workers.start(2)
    records = branch_workload("00", 60) + ghost_sale("00", "00:ghost") + branch_workload("05", 7)

    # When the jobs are enqueued and the workers run
    relay_env.enqueue(records)
    mid = [scrape(url) for url in metrics_workers.urls()]
    mid_db = db_snapshot(relay_env)

    # Then mid-run, the counters never run ahead of what the database holds
    scraped_accepted = sum(total(s, "etims_job_outcomes_total", outcome="accepted") for s in mid)
    assert scraped_accepted <= sum(n for (s, _), n in mid_db["jobs"].items() if s == "accepted")

    # ... and once branch 00 is settled and 05 parked, every figure equals the database's
    final = wait_until(
        lambda: (
            (d := db_snapshot(relay_env))
            and d["active_00"] == 0
            and d["parked"] == [f"{TIN}/05"]
            and d
        ),
        timeout=120,
        what="branch 00 settled and 05 parked",
    )
    time.sleep(0.5)  # the observer counts just after the commit the snapshot saw
    scraped = [scrape(url) for url in metrics_workers.urls()]
    final = db_snapshot(relay_env)
    now = time.time()

    # DB gauges: every target reports the same values, equal to the database
    for samples in scraped:
        for state in GAUGE_STATES:
            for kind in KINDS:
                assert (
                    samples[("etims_jobs", (("kind", kind), ("state", state)))]
                    == final["jobs"][(state, kind)]
                ), (state, kind)
        age = samples[("etims_oldest_pending_age_seconds", ())]
        assert abs(age - (now - final["oldest"])) < 5
        assert samples[("etims_branch_oldest_pending_age_seconds", (("branch", f"{TIN}/05"),))] > 0
        assert (
            "etims_branch_oldest_pending_age_seconds",
            (("branch", f"{TIN}/00"),),
        ) not in samples
        assert samples[("etims_branches_stuck", (("reason", "parked"),))] == 1
        assert samples[("etims_branches_stuck", (("reason", "blocked"),))] == 1
        assert samples[("etims_db_up", ())] == 1

    # Process counters: summed over the two workers, they equal what the outbox recorded
    def summed(name: str, **labels: str) -> float:
        return sum(total(s, name, **labels) for s in scraped)

    accepted = sum(n for (s, _), n in final["jobs"].items() if s == "accepted")
    assert summed("etims_job_outcomes_total", outcome="accepted") == accepted
    assert summed("etims_job_enqueue_to_accepted_seconds_count") == accepted
    assert summed("etims_job_dead_letters_total", kind="sale", code="910") == 1
    assert summed("etims_job_outcomes_total", outcome="parked") == 1
    assert summed("etims_branch_parks_total") == 1
    calls = sum(final["attempts"].values())
    assert summed("etims_oscu_calls_total") == calls
    assert summed("etims_oscu_call_duration_seconds_count") == calls
    rate_limited = final["attempts"][("rate_limited", "990")]
    assert rate_limited == 6
    assert summed("etims_oscu_calls_total", outcome="rate_limited", code="990") == rate_limited
    assert summed("etims_job_retries_total", reason="rate_limited") == rate_limited
