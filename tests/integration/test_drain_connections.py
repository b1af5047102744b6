"""A drain holds no database connection while KRA answers, so branches in flight are not
capped by the pool, and a pool that is momentarily empty is a wait, never an error."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import QueuePool

from producers import builders as b
from tests.helpers import ledger_writes
from tests.integration.pipeline_fixtures import Pipeline
from tests.workload import TIN, item_code
from worker.drain import DrainContext, drain
from worker.oscu.client import OscuClient
from worker.oscu.outcome import CallOutcome
from worker.outbox import queries as q
from worker.outbox.branch_store import branch_store
from worker.outbox.db import make_engine

NOW = datetime.now(UTC)
WATER = b.SaleLine(item_code(1), "Water", Decimal("1"), Decimal("116"))


class SlowKra:
    """The relay's client, with KRA taking ``delay_s`` per write; records how many pooled
    database connections were checked out while each call was waiting."""

    def __init__(self, client: OscuClient, engine: Any, delay_s: float) -> None:
        self._client, self._engine, self._delay_s = client, engine, delay_s
        self.checked_out: list[int] = []

    def call(self, endpoint: str, body: Any, **kw: Any) -> CallOutcome:
        time.sleep(self._delay_s)
        self.checked_out.append(self._engine.pool.checkedout())
        return self._client.call(endpoint, body, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def sales(bhf: str, n: int) -> list[dict[str, Any]]:
    """The item registered and stocked at branch ``bhf``, then ``n`` sales of it."""
    stock = b.SaleLine(item_code(1), "Water", Decimal("50"), Decimal("116"))
    records = [
        b.item(TIN, bhf, f"item@{bhf}", item_cd=item_code(1), item_nm="Water",
               price=Decimal("116")),
        b.stock_io(TIN, bhf, f"opening@{bhf}", [stock], sar_ty_cd="06", at=NOW,
                   depends_on=[f"item@{bhf}"]),
    ]  # fmt: skip
    records += [
        b.sale(TIN, bhf, f"s{i}@{bhf}", [WATER], trd_invc_no=f"T{i}", at=NOW) for i in range(n)
    ]
    return records


def test_no_connection_is_checked_out_while_kra_answers(pipeline: Pipeline) -> None:
    # Given a branch with a few sales
    pipeline.enqueue(sales("00", 5))
    ctx = pipeline.runtime.drain_context()
    kra = SlowKra(ctx.client, pipeline.runtime.engine, 0.0)

    # When it drains
    pipeline_drain = drain(pipeline.branch().id, replace_client(ctx, kra))

    # Then every sale went, and during every call no connection of the pool was in use
    assert pipeline_drain.status == "idle" and pipeline_drain.sent == 7
    assert set(pipeline.states().values()) == {"accepted"}
    assert kra.checked_out == [0] * 7


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_four_branches_in_flight_share_one_connection(pipeline_factory: Any) -> None:
    # Given four branches with sales, a KRA that takes 0.2 s per write, and a pool of ONE
    # connection whose checkout gives up after 2 s (one branch alone takes longer to drain)
    branches = ("00", "01", "02", "03")
    pipeline: Pipeline = pipeline_factory(branches=branches)
    for bhf in branches:
        pipeline.enqueue(sales(bhf, 12))
    engine = create_engine(pipeline.runtime.engine.url, pool_size=1, max_overflow=0, pool_timeout=2)
    ctx = pipeline.runtime.drain_context()
    kra = SlowKra(ctx.client, engine, 0.2)
    context = replace_client(
        DrainContext(branch_store(engine), ctx.client, ctx.devices, ctx.settings), kra
    )
    with engine.connect() as conn:
        ids = [int(q.get_branch(conn, TIN, bhf).id) for bhf in branches]

    # When they drain at the same time, one thread each
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run(branch_id: int) -> None:
        try:
            reports.append(drain(branch_id, context))
        except BaseException as exc:  # a pool timeout would land here
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - started
    engine.dispose()

    # Then nothing failed (no pool timeout), every sale was accepted, and the branches were
    # in flight at the same time, not one after the other: had a drain held the only
    # connection through its call, the calls would have run one at a time
    assert errors == []
    assert sorted(r.sent for r in reports) == [14, 14, 14, 14]
    assert set(pipeline.states().values()) == {"accepted"}
    assert elapsed < 56 * 0.2 * 0.75, elapsed  # one after the other would take 11.2 s


class PoolTakenWhileKraAnswers:
    """The relay's client; as KRA answers its first write, another thread takes the pool's
    only connection for ``hold_s``, so the drain finds the pool empty when it records."""

    def __init__(self, client: OscuClient, engine: Engine, hold_s: float) -> None:
        self._client, self._engine, self._hold_s = client, engine, hold_s
        self.holder: threading.Thread | None = None

    def call(self, endpoint: str, body: Any, **kw: Any) -> CallOutcome:
        outcome = self._client.call(endpoint, body, **kw)
        if self.holder is None:
            taken = threading.Event()

            def hold() -> None:
                with self._engine.connect():
                    taken.set()
                    time.sleep(self._hold_s)

            self.holder = threading.Thread(target=hold)
            self.holder.start()
            taken.wait(5)
        return outcome

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def pool_of_one(url: str, timeout_s: float) -> Engine:
    """The relay's engine for ``url`` (SQLite's hooks included) with a pool of a single
    connection whose checkout gives up after ``timeout_s``."""
    engine = make_engine(url)
    pool: Any = engine.pool
    engine.pool = QueuePool(
        pool._creator, pool_size=1, max_overflow=0, timeout=timeout_s,
        dialect=pool._dialect, _dispatch=pool.dispatch,
    )  # fmt: skip
    return engine


def test_a_result_that_finds_the_pool_empty_is_recorded_once_a_connection_frees(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a branch with an item, its opening stock and a sale, and a pool of one connection
    # (checkout gives up after 0.3 s) that another thread holds for 0.4 s right as KRA
    # accepts the first write
    pipeline.enqueue(sales("00", 1))
    engine = pool_of_one(str(pipeline.runtime.engine.url), timeout_s=0.3)
    ctx = pipeline.runtime.drain_context()
    kra = PoolTakenWhileKraAnswers(ctx.client, engine, hold_s=0.4)
    context = replace_client(
        DrainContext(branch_store(engine), ctx.client, ctx.devices, ctx.settings), kra
    )

    # When the branch drains
    try:
        report = drain(pipeline.branch().id, context)
    finally:
        if kra.holder is not None:
            kra.holder.join()
        engine.dispose()

    # Then the first write's result waited for the connection instead of being thrown away:
    # every job is accepted and KRA received each write once (nothing resent)
    assert "no database connection to record job" in caplog.text
    assert report.status == "idle" and report.sent == 3
    assert set(pipeline.states().values()) == {"accepted"}
    endpoints = ["saveItem", "insertStockIO", "saveTrnsSalesOsdc"]
    writes = [w["endpoint"] for w in ledger_writes(pipeline.sim.ledger_path, endpoints)]
    assert writes == endpoints


def replace_client(ctx: DrainContext, client: Any) -> DrainContext:
    fresh = replace(ctx)
    fresh.client = client
    return fresh
