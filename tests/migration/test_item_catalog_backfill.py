"""Revision 0008 learns the type of every item enqueued before it, so the "no service in stock
movements" rule also knows the items of an outbox that was upgraded, not just new ones."""

# ruff: noqa: F811 - the fixture is imported into the module, then named as a parameter

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, select

from producers import builders as b
from producers.enqueue import InvalidRecords, enqueue
from tests.migration.test_migrations import empty_db  # noqa: F401 - fixture
from tests.workload import TIN
from worker.outbox import migrate
from worker.outbox import queries as q
from worker.outbox.catalog_models import item_catalog
from worker.outbox.db import make_engine
from worker.outbox.models import jobs


def test_upgrade_fills_the_catalogue_from_earlier_item_jobs(empty_db: str) -> None:
    migrate.upgrade(empty_db, "0004")
    engine = make_engine(empty_db)
    with engine.begin() as conn:
        branch = q.ensure_branch(conn, TIN, "00", 0.0)
        for seq, (code, item_type) in enumerate(
            [("DELIVERY", "2"), ("DELIVERY", "3"), ("SOAP", "2")], start=1
        ):
            conn.execute(
                insert(jobs).values(
                    branch_id=branch, tin=TIN, bhf_id="00", seq=seq, kind="item",
                    idempotency_key=f"i{seq}", payload_hash="h", state="accepted",
                    payload=json.dumps({"itemCd": code, "itemTyCd": item_type}),
                    created_at=0.0, updated_at=0.0,
                )
            )  # fmt: skip
    migrate.upgrade(empty_db)
    with engine.connect() as conn:
        rows = conn.execute(select(item_catalog).order_by(item_catalog.c.item_cd)).all()
    assert [tuple(r) for r in rows] == [(TIN, "DELIVERY", "3"), (TIN, "SOAP", "2")]
    master = b.stock_master(TIN, "00", "m", item_cd="DELIVERY")
    with pytest.raises(InvalidRecords) as refused:
        enqueue(engine, [master])
    engine.dispose()
    assert [e.path for e in refused.value.errors] == ["payload.itemCd"]
