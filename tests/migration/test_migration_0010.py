"""0010 on an outbox that already holds stock movements: each gets its sarTyCd from its
payload, so a backlog enqueued before the upgrade is deferred and merged like one enqueued
after it; a downgrade is refused while a job waits merged (the older code knows no such state)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Connection, text

from tests.migration.test_migrations import empty_db  # noqa: F401  (fixture: SQLite and PG)
from worker.outbox import migrate
from worker.outbox.db import make_engine

TIN = "P051234567A"
_JOB = (
    "INSERT INTO jobs (id, branch_id, tin, bhf_id, seq, kind, idempotency_key, payload, "
    "payload_hash, state, attempts, maybe_recorded, receipt_missing, created_at, updated_at) "
    "VALUES (:seq, 1, :tin, '00', :seq, :kind, :key, :payload, 'h', :state, 0, false, false, "
    "0, 0)"
)


def insert_jobs(conn: Connection, jobs: list[tuple[str, str, dict[str, Any]]]) -> None:
    conn.execute(
        text(
            "INSERT INTO branches (id, tin, bhf_id, next_seq, next_invc_no, next_sar_no, "
            "fencing_token, created_at) VALUES (1, :tin, '00', :next, 1, 1, 0, 0)"
        ),
        {"tin": TIN, "next": len(jobs) + 1},
    )
    for seq, (kind, state, payload) in enumerate(jobs, start=1):
        conn.execute(
            text(_JOB),
            {"tin": TIN, "seq": seq, "kind": kind, "state": state, "key": f"k{seq}",
             "payload": json.dumps(payload)},
        )  # fmt: skip


def test_upgrade_backfills_the_type_of_each_stock_movement(empty_db: str) -> None:  # noqa: F811
    migrate.upgrade(empty_db, "0009")
    engine = make_engine(empty_db)
    with engine.begin() as conn:
        insert_jobs(
            conn,
            [
                ("stock_io", "accepted", {"sarTyCd": "06", "itemList": []}),
                ("stock_io", "pending", {"sarTyCd": "11", "itemList": []}),
                ("sale", "pending", {"sarTyCd": "11"}),  # not a stock movement
            ],
        )
    engine.dispose()

    migrate.upgrade(empty_db)

    engine = make_engine(empty_db)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT sar_ty_cd, merged_into FROM jobs ORDER BY seq")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("06", None), ("11", None), (None, None)]


def test_downgrade_is_refused_while_a_stock_out_waits_merged_into_a_send(
    empty_db: str,  # noqa: F811
) -> None:
    # Given an outbox at 0010 with a carrier in flight and a stock-out merged into it (its
    # lines may be at KRA inside the carrier's send)
    migrate.upgrade(empty_db)
    engine = make_engine(empty_db)
    with engine.begin() as conn:
        insert_jobs(
            conn,
            [
                ("stock_io", "in_flight", {"sarTyCd": "11", "itemList": []}),
                ("stock_io", "pending", {"sarTyCd": "11", "itemList": []}),
            ],
        )
        conn.execute(text("UPDATE jobs SET state = 'merged', merged_into = 1 WHERE id = 2"))
    engine.dispose()

    # When it is downgraded to 0009 (whose code knows no "merged" state), it is refused,
    # telling the operator what to do, and nothing changes
    with pytest.raises(RuntimeError, match="ETIMS_COALESCE__STOCK_IO=false"):
        migrate.downgrade(empty_db, "0009")
    engine = make_engine(empty_db)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT state, merged_into FROM jobs ORDER BY seq")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("in_flight", None), ("merged", 1)]

    # ... and once the carrier's send ended (its member with it), the downgrade goes through
    engine = make_engine(empty_db)
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET state = 'accepted'"))
    engine.dispose()
    migrate.downgrade(empty_db, "0009")
    engine = make_engine(empty_db)
    with engine.connect() as conn:
        states = conn.execute(text("SELECT state FROM jobs ORDER BY seq")).scalars().all()
    engine.dispose()
    assert states == ["accepted", "accepted"]
