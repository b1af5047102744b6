"""deploy/postgres/retention.sql on a real, migrated PostgreSQL: it deletes only what it says.

Given accepted jobs older and newer than the cutoff, jobs in other states, a credit note that
still points at an old original, a job whose webhook delivery is pending, and the attempts,
events and dependency rows around them; when the runbook's psql command runs; then exactly
the old accepted jobs that nothing still needs are gone, with their rows, and nothing else.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from sqlalchemy import Engine, func, insert, select

from tests.deploy.deploy_support import DEPLOY
from worker.outbox.db import make_engine
from worker.outbox.intake_models import webhook_deliveries
from worker.outbox.models import (
    attempts,
    audit_log,
    branches,
    job_dependencies,
    jobs,
    result_events,
)

RETENTION_SQL = DEPLOY / "postgres" / "retention.sql"
DAY = 86400.0


def _job(conn: Any, seq: int, state: str, age_days: float, **extra: Any) -> int:
    now = time.time()
    values = {
        "branch_id": 1,
        "tin": "P051234567A",
        "bhf_id": "00",
        "seq": seq,
        "kind": "sale",
        "idempotency_key": f"k{seq}",
        "payload": "{}",
        "payload_hash": "0" * 64,
        "state": state,
        "attempts": 1,
        "maybe_recorded": False,
        "receipt_missing": False,
        "created_at": now - age_days * DAY,
        "updated_at": now - age_days * DAY,
        "accepted_at": now - age_days * DAY if state == "accepted" else None,
        **extra,
    }
    job_id = int(conn.execute(insert(jobs).values(**values).returning(jobs.c.id)).scalar_one())
    conn.execute(
        insert(attempts).values(
            job_id=job_id,
            number=1,
            started_at=now,
            latency_s=0.1,
            outcome="accepted",
            fencing_token=1,
        )
    )
    event = conn.execute(
        insert(result_events)
        .values(job_id=job_id, tin="P051234567A", state=state, body="{}", created_at=now)
        .returning(result_events.c.id)
    ).scalar_one()
    conn.execute(
        insert(webhook_deliveries).values(
            event_id=event,
            tin="P051234567A",
            state="delivered",
            attempts=1,
            next_attempt_at=now,
            created_at=now,
        )
    )
    return job_id


def _seed(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:
        conn.execute(
            insert(branches).values(
                id=1,
                tin="P051234567A",
                bhf_id="00",
                next_seq=20,
                next_invc_no=20,
                next_sar_no=1,
                fencing_token=1,
                created_at=time.time(),
            )
        )
        ids = {
            "old_accepted": _job(conn, 1, "accepted", 40),
            "old_accepted_2": _job(conn, 2, "accepted", 35),
            "recent_accepted": _job(conn, 3, "accepted", 5),
            "old_dead": _job(conn, 4, "dead", 40),
            "old_skipped": _job(conn, 5, "skipped", 40),
            "old_original": _job(conn, 6, "accepted", 40),
            "old_with_pending_webhook": _job(conn, 8, "accepted", 40),
        }
        ids["recent_credit_note"] = _job(
            conn, 7, "accepted", 1, kind="credit_note", original_job_id=ids["old_original"]
        )
        # A pending job that depends on an old accepted one: the dependency row goes, the job stays.
        ids["pending_dependent"] = _job(conn, 9, "pending", 0)
        conn.execute(
            insert(job_dependencies).values(
                job_id=ids["pending_dependent"], depends_on_id=ids["old_accepted_2"]
            )
        )
        pending_event = conn.execute(
            select(result_events.c.id).where(
                result_events.c.job_id == ids["old_with_pending_webhook"]
            )
        ).scalar_one()
        conn.execute(
            webhook_deliveries.update()
            .where(webhook_deliveries.c.event_id == pending_event)
            .values(state="pending")
        )
        conn.execute(
            insert(audit_log).values(
                at=time.time(), actor="t", action="replay", job_id=ids["old_accepted"]
            )
        )
    return ids


def _run(pg_url: str, days: int, batch: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "psql",
            pg_url,
            "-X",
            "-q",
            "-v",
            f"retention_days={days}",
            "-v",
            f"batch_size={batch}",
            "-f",
            str(RETENTION_SQL),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_retention_deletes_only_old_accepted_jobs_nothing_needs(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        ids = _seed(engine)
        done = _run(pg_url, days=30, batch=1000)
        assert done.returncode == 0, done.stderr
        with engine.connect() as conn:
            left = {int(r[0]) for r in conn.execute(select(jobs.c.id))}
            gone = set(ids.values()) - left
            assert gone == {ids["old_accepted"], ids["old_accepted_2"]}
            for table in (attempts, result_events):
                orphans = conn.execute(
                    select(func.count()).select_from(table).where(table.c.job_id.in_(gone))
                ).scalar_one()
                assert orphans == 0, table.name
            assert (
                conn.execute(select(func.count()).select_from(job_dependencies)).scalar_one() == 0
            )
            assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == 1
            assert (
                conn.execute(select(func.count()).select_from(webhook_deliveries)).scalar_one() == 7
            )
    finally:
        engine.dispose()


def test_retention_batches_and_is_repeatable(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        ids = _seed(engine)
        for expected_left in (8, 7, 7):  # 9 jobs; two deletable; batch of one per run
            done = _run(pg_url, days=30, batch=1)
            assert done.returncode == 0, done.stderr
            with engine.connect() as conn:
                assert (
                    conn.execute(select(func.count()).select_from(jobs)).scalar_one()
                    == expected_left
                )
        with engine.connect() as conn:
            assert conn.execute(
                select(jobs.c.id).where(jobs.c.id == ids["recent_accepted"])
            ).first()
    finally:
        engine.dispose()


def test_a_missing_variable_fails_loudly(pg_url: str) -> None:
    done = subprocess.run(
        ["psql", pg_url, "-X", "-q", "-v", "retention_days=30", "-f", str(RETENTION_SQL)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 0
    finally:
        engine.dispose()
