"""The whole pipeline with real processes: CLI enqueue, Celery workers on Redis, PostgreSQL
outbox, the simulator as KRA. What a user sees: every job accepted, KRA's ledger in order."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select

from simulator.verify import verify_ledger
from tests.helpers import RelayEnv, WorkerPool, all_terminal, ledger_writes, wait_until
from tests.workload import TIN, branch_ids, workload
from worker.device_init import init_device
from worker.outbox.db import make_engine
from worker.outbox.models import jobs
from worker.runtime import build_runtime

pytestmark = pytest.mark.slow


def init_devices(relay: RelayEnv, branches: list[str]) -> None:
    runtime = build_runtime(relay.settings(), need_broker=False)
    try:
        for bhf in branches:
            init_device(
                runtime.engine,
                runtime.client,
                runtime.devices,
                tin=TIN,
                bhf_id=bhf,
                serial=f"SER-{bhf}",
            )
    finally:
        runtime.close()


def acceptance_matches_enqueue_order(relay: RelayEnv, ledger: Path) -> None:
    """Per branch, KRA received the jobs it was sent in exactly the order they were enqueued
    (a stock master superseded by a later one of its item was never sent)."""
    engine = make_engine(relay.database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(jobs).order_by(jobs.c.branch_id, jobs.c.seq)).all()
    engine.dispose()
    expected: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for job in rows:
        assert job.state in ("accepted", "superseded"), (
            job.idempotency_key, job.state, job.result_message
        )  # fmt: skip
        if job.state == "accepted":
            expected[job.bhf_id].append(_identity_of_job(job))
    seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for record in ledger_writes(ledger):
        if record["endpoint"] == "selectInitOsdcInfo":
            continue
        identity = _identity_of_write(record)
        branch = seen[record["bhfId"]]
        # An upsert (saveItem, saveStockMaster) whose answer was lost is resent and KRA
        # records it again, identically: harmless, so collapse such immediate repeats.
        if branch and branch[-1] == identity and identity[0] in IDEMPOTENT_ENDPOINTS:
            continue
        branch.append(identity)
    assert dict(seen) == dict(expected)


IDEMPOTENT_ENDPOINTS = ("saveItem", "saveStockMaster")


def _identity_of_job(job: object) -> tuple[str, str]:
    payload = json.loads(job.payload)  # type: ignore[attr-defined]
    kind = job.kind  # type: ignore[attr-defined]
    if kind == "item":
        return ("saveItem", payload["itemCd"])
    if kind in ("sale", "credit_note"):
        return ("saveTrnsSalesOsdc", payload["trdInvcNo"])
    if kind == "stock_io":
        return ("insertStockIO", str(job.sar_no))  # type: ignore[attr-defined]
    return ("saveStockMaster", f"{payload['itemCd']}={json.loads(job.body)['rsdQty']}")  # type: ignore[attr-defined]


def _identity_of_write(record: dict) -> tuple[str, str]:
    body = record["body"]
    endpoint = record["endpoint"]
    if endpoint == "saveItem":
        return (endpoint, body["itemCd"])
    if endpoint == "saveTrnsSalesOsdc":
        return (endpoint, body["trdInvcNo"])
    if endpoint == "insertStockIO":
        return (endpoint, str(body["sarNo"]))
    if endpoint == "saveStockMaster":
        return (endpoint, f"{body['itemCd']}={body['rsdQty']}")
    return (endpoint, body["itemCd"])


def test_eight_branches_of_200_jobs_on_four_workers_reach_kra_in_order(
    relay_env: RelayEnv, workers: WorkerPool, simulator, tmp_path: Path
) -> None:
    # Given 8 branches with 200 jobs each, and four worker processes
    branches = branch_ids(8)
    init_devices(relay_env, branches)
    records = workload(8, 200)
    assert len(records) >= 8 * 198
    workers.start(4, concurrency=4)

    # When every job is enqueued through the CLI
    relay_env.enqueue(records)

    # Then all of them end accepted, and KRA's ledger holds them in enqueue order per branch
    status = wait_until(
        lambda: (s := relay_env.status()) and all_terminal(s) and s,
        timeout=240,
        what="all jobs terminal",
    )
    jobs_done = status["jobs"]["accepted"] + status["jobs"]["superseded"]
    assert jobs_done == len(records), status
    report = verify_ledger(simulator.ledger)
    assert report.ok, report.violations
    acceptance_matches_enqueue_order(relay_env, simulator.ledger)
