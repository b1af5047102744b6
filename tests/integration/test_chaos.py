"""Chaos on PostgreSQL: workers SIGKILLed, Redis flushed, 10% of KRA's answers faulty.

Invariants under test (README, invariants 1-3): nothing lost (every job accepted), nothing signed
twice (each trdInvcNo signed once, under the number our outbox holds), order per branch
(the simulator's ledger verifies: invcNo/sarNo 1..N, stock-outs after their sales).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest
import redis
from sqlalchemy import select

from simulator.verify import verify_ledger
from tests.conftest import REDIS_HOST, REDIS_PORT
from tests.helpers import RelayEnv, WorkerPool, all_terminal, ledger_writes, wait_until
from tests.integration.test_pipeline_workers import acceptance_matches_enqueue_order, init_devices
from tests.workload import branch_ids, workload
from worker.outbox.db import make_engine
from worker.outbox.models import attempts, jobs

pytestmark = pytest.mark.slow

FAULTS = [
    {"kind": "drop", "probability": 0.025},
    {"kind": "lost_answer", "probability": 0.025},
    {"kind": "http_error", "status": 500, "probability": 0.0125},
    {"kind": "http_error", "status": 503, "probability": 0.0125},
    {"kind": "result_code", "code": "990", "probability": 0.025},
]


def test_chaos_every_job_accepted_once_in_order(
    relay_env: RelayEnv, workers: WorkerPool, simulator
) -> None:
    rng = random.Random(7)
    branches = branch_ids(8)
    init_devices(relay_env, branches)
    for fault in FAULTS:
        simulator.add_fault(endpoint="*", **fault)
    records = workload(8, 200)

    # Given four workers, with jobs flowing
    workers.start(4, concurrency=4)
    relay_env.enqueue(records)

    # When workers are SIGKILLed three times and Redis is flushed once, mid-run
    for round_ in range(3):
        time.sleep(2.0)
        victim = rng.choice(workers.alive())
        workers.kill(victim)
        workers.start(1, concurrency=4, beat_on_first=True)
        if round_ == 1:
            redis.Redis(host=REDIS_HOST, port=REDIS_PORT).flushall()

    # Then every job ends accepted, once, in order, under the number KRA signed it with
    outcomes = assert_chaos_invariants(relay_env, simulator, len(records))

    # ... and the faults really happened (the test exercised unknown and transient paths)
    assert outcomes["unknown"] > 0 and outcomes["transient"] > 0, outcomes
    assert outcomes["rate_limited"] > 0, outcomes


def assert_chaos_invariants(relay: RelayEnv, simulator, expected_jobs: int) -> Counter[str]:
    """What chaos must not break (README, invariants 1-3); returns the attempts' outcome counts."""
    status = wait_until(
        lambda: (s := relay.status()) and all_terminal(s) and s,
        timeout=300,
        what="all jobs terminal under chaos",
    )
    # (a stock master whose item has a later one waiting ends superseded, never sent)
    assert status["jobs"]["accepted"] + status["jobs"]["superseded"] == expected_jobs, status

    # KRA's ledger holds: numbers 1..N without gap or repeat, stock-outs after sales, and
    # every branch's jobs in enqueue order
    report = verify_ledger(simulator.ledger)
    assert report.ok, report.violations
    acceptance_matches_enqueue_order(relay, simulator.ledger)

    # no sale was signed twice, and each job holds the number KRA signed it under
    sales = ledger_writes(simulator.ledger, ["saveTrnsSalesOsdc"])
    signed = Counter((s["bhfId"], s["body"]["trdInvcNo"]) for s in sales)
    assert max(signed.values()) == 1
    signed_number = {(s["bhfId"], s["body"]["trdInvcNo"]): s["body"]["invcNo"] for s in sales}
    engine = make_engine(relay.database_url)
    with engine.connect() as conn:
        sale_jobs = conn.execute(select(jobs).where(jobs.c.kind == "sale")).all()
        outcomes = Counter(r.outcome for r in conn.execute(select(attempts.c.outcome)))
    engine.dispose()
    for job in sale_jobs:
        trd = json.loads(job.payload)["trdInvcNo"]
        assert job.invc_no == signed_number[(job.bhf_id, trd)]
        assert job.receipt is not None, f"{trd}: receipt not recovered"
    return outcomes
