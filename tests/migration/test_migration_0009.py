"""0009 on an outbox that already holds stock masters: each gets its itemCd from its payload,
so a backlog enqueued before the upgrade is coalesced like one enqueued after it."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from tests.migration.test_migrations import empty_db  # noqa: F401  (fixture: SQLite and PG)
from worker.outbox import migrate
from worker.outbox.db import make_engine

TIN = "P051234567A"


def test_upgrade_backfills_the_item_of_each_stock_master(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0008")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO branches (id, tin, bhf_id, next_seq, next_invc_no, next_sar_no, "
                "fencing_token, created_at) VALUES (1, :tin, '00', 4, 1, 1, 0, 0)"
            ),
            {"tin": TIN},
        )
        for seq, (kind, state, payload) in enumerate(
            [
                ("stock_master", "accepted", {"itemCd": "KE2NTNO0000001"}),
                ("stock_master", "pending", {"itemCd": "KE2NTNO0000002", "rsdQty": 4}),
                ("item", "accepted", {"itemCd": "KE2NTNO0000001"}),
            ],
            start=1,
        ):
            conn.execute(
                text(
                    "INSERT INTO jobs (branch_id, tin, bhf_id, seq, kind, idempotency_key, "
                    "payload, payload_hash, state, attempts, maybe_recorded, receipt_missing, "
                    "created_at, updated_at) VALUES (1, :tin, '00', :seq, :kind, :key, "
                    ":payload, 'h', :state, 0, false, false, 0, 0)"
                ),
                {
                    "tin": TIN,
                    "seq": seq,
                    "kind": kind,
                    "state": state,
                    "key": f"k{seq}",
                    "payload": json.dumps(payload),
                },
            )
    engine.dispose()

    migrate.upgrade(url)

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, stock_item_cd, superseded_by FROM jobs ORDER BY seq")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("stock_master", "KE2NTNO0000001", None),
        ("stock_master", None, None),  # a producer's own count is never coalesced
        ("item", None, None),
    ]


def test_downgrade_leaves_superseded_jobs_skipped_naming_their_carrier(
    empty_db: str,  # noqa: F811
) -> None:
    # Given an outbox at 0009 with a superseded stock master and its carrier
    url = empty_db
    migrate.upgrade(url, "0009")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO branches (id, tin, bhf_id, next_seq, next_invc_no, next_sar_no, "
                "fencing_token, created_at) VALUES (1, :tin, '00', 3, 1, 1, 0, 0)"
            ),
            {"tin": TIN},
        )
        for seq, state, by in [(1, "superseded", 2), (2, "accepted", None)]:
            conn.execute(
                text(
                    "INSERT INTO jobs (id, branch_id, tin, bhf_id, seq, kind, idempotency_key, "
                    "payload, payload_hash, state, attempts, maybe_recorded, receipt_missing, "
                    "superseded_by, created_at, updated_at) VALUES (:seq, 1, :tin, '00', :seq, "
                    "'stock_master', :key, :payload, 'h', :state, 0, false, false, :by, 0, 0)"
                ),
                {
                    "tin": TIN,
                    "seq": seq,
                    "state": state,
                    "by": by,
                    "key": f"k{seq}",
                    "payload": json.dumps({"itemCd": "KE2NTNO0000001"}),
                },
            )
    engine.dispose()

    # When it is downgraded to 0008 (whose code knows no "superseded" state)
    migrate.downgrade(url, "0008")

    # Then the superseded job is skipped, its reason naming the job that carried it
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT state, skip_reason FROM jobs ORDER BY seq")).all()
    engine.dispose()
    assert rows[0].state == "skipped"
    assert "superseded by job 2" in rows[0].skip_reason
    assert (rows[1].state, rows[1].skip_reason) == ("accepted", None)
