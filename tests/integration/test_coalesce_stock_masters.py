"""Stock masters are state: under a backlog a branch sends fewer of them, and KRA still ends
with every item's true balance, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from producers import builders as b
from simulator.verify import verify_ledger
from tests.helpers import ledger_writes
from tests.integration.pipeline_fixtures import Pipeline
from tests.integration.producers.intake_fixtures import start_intake
from tests.workload import TIN, branch_workload, item_code
from worker.drain import drain
from worker.outbox import ops_queries as oq
from worker.outbox import queries as q
from worker.outbox.models import result_events, stock_balances
from worker.replay import Actor, edit, replay

NOW = datetime.now(UTC)
OPS = Actor("ops")
ITEMS = 2
SALES = 12


def backlog(sales: int = SALES) -> list[dict[str, Any]]:
    """Items, opening stock-in, then ``sales`` one-line sales alternating over the items, each
    with its stock-out (after the sale) and stock master (after the stock-out)."""
    return branch_workload("00", 3 + 3 * sales, items=ITEMS)


def writes(p: Pipeline, endpoint: str) -> list[dict[str, Any]]:
    return ledger_writes(p.sim.ledger_path, [endpoint])


def outbox_balances(p: Pipeline) -> dict[str, Decimal]:
    with p.runtime.engine.connect() as conn:
        rows = conn.execute(select(stock_balances.c.item_cd, stock_balances.c.qty)).all()
    return {str(item): Decimal(qty) for item, qty in rows}


def assert_kra_agrees_with_the_outbox(p: Pipeline) -> None:
    """The ledger verifies (order, numbers, every rsdQty equal to KRA's running balance), and
    KRA ends with each item's balance both as movements and as its last stock master."""
    report = verify_ledger(p.sim.ledger_path)
    assert report.ok, report.violations
    branch = f"{TIN}/00"
    assert report.balances[branch] == outbox_balances(p)
    assert report.stock_masters[branch] == outbox_balances(p)


def stock_master_states(p: Pipeline) -> dict[str, str]:
    return {k: s for k, s in p.states().items() if ":stock-master:" in k}


def test_a_backlog_sends_one_stock_master_per_item_after_the_first(pipeline: Pipeline) -> None:
    # Given a branch whose whole backlog is already enqueued (KRA was away)
    pipeline.enqueue(backlog())

    # When it drains
    pipeline.drain()

    # Then every sale and stock-out went, in order ...
    sales = writes(pipeline, "saveTrnsSalesOsdc")
    assert [w["body"]["invcNo"] for w in sales] == list(range(1, SALES + 1))
    assert len(writes(pipeline, "insertStockIO")) == 1 + SALES
    # ... but of the 12 stock masters only each item's first and last went to KRA
    masters = writes(pipeline, "saveStockMaster")
    assert len(masters) == 2 * ITEMS
    # ... the others ended superseded, each naming its item's last stock master
    states = stock_master_states(pipeline)
    assert sorted(states.values()).count("superseded") == SALES - 2 * ITEMS
    last = {}
    for key in sorted(states, key=lambda k: pipeline.job(k).seq):
        last[key.rsplit(":", 1)[1]] = pipeline.job(key).id
    for key, state in states.items():
        job = pipeline.job(key)
        if state == "superseded":
            assert job.superseded_by == last[key.rsplit(":", 1)[1]]
            assert job.attempts == 0 and job.body is None  # never sent
        else:
            assert state == "accepted" and job.superseded_by is None
    # ... and KRA's balances are the outbox's, reported by the last stock master of each item
    assert_kra_agrees_with_the_outbox(pipeline)
    # ... and a consumer of result events hears of each superseded job and what carries it
    with pipeline.runtime.engine.connect() as conn:
        events = conn.execute(
            select(result_events.c.body).where(result_events.c.state == "superseded")
        ).all()
    assert len(events) == SALES - 2 * ITEMS
    assert all('"superseded_by": ' in e.body for e in events)


def test_with_coalescing_off_every_stock_master_is_sent(pipeline: Pipeline) -> None:
    pipeline.runtime.settings.coalesce.stock_master = False
    pipeline.enqueue(backlog())

    pipeline.drain()

    assert len(writes(pipeline, "saveStockMaster")) == SALES
    assert "superseded" not in pipeline.states().values()
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_branch_without_backlog_sends_every_stock_master(pipeline: Pipeline) -> None:
    # Given sales that arrive one at a time, each drained before the next arrives
    records = backlog(6)
    pipeline.enqueue(records[:3])
    pipeline.drain()
    for start in range(3, len(records), 3):
        pipeline.enqueue(records[start : start + 3])
        pipeline.drain()

    # Then nothing waits behind a later stock master: each one goes
    assert len(writes(pipeline, "saveStockMaster")) == 6
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_stock_master_another_job_depends_on_is_sent(pipeline: Pipeline) -> None:
    # Given a backlog where a stock-in waits on a stock master in the middle of it
    records = backlog()
    middle = f"00:sale:5:stock-master:{item_code(1 + 5 % ITEMS)}"
    assert any(r["idempotency_key"] == middle for r in records)
    line = b.SaleLine(item_code(1 + 5 % ITEMS), "Item", Decimal("7"), Decimal("116"))
    records.append(
        b.stock_io(TIN, "00", "restock", [line], sar_ty_cd="06", at=NOW, depends_on=[middle])
    )
    records.append(
        b.stock_master(TIN, "00", "restocked", item_cd=line.item_cd, depends_on=["restock"])
    )
    pipeline.enqueue(records)

    pipeline.drain()

    # Then that stock master went to KRA; its neighbours of the same item did not
    assert pipeline.job(middle).state == "accepted"
    assert pipeline.job(f"00:sale:3:stock-master:{item_code(2)}").state == "superseded"
    assert pipeline.job(f"00:sale:7:stock-master:{item_code(2)}").state == "superseded"
    assert pipeline.job(f"00:sale:11:stock-master:{item_code(2)}").state == "superseded"
    assert pipeline.job("restock").state == pipeline.job("restocked").state == "accepted"
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_producers_own_count_is_always_sent(pipeline: Pipeline) -> None:
    # Given a backlog with a stock-take in the middle: a stock master whose rsdQty the
    # producer counted itself (wrongly, as it turns out)
    records = backlog()
    middle = next(i for i, r in enumerate(records) if r["idempotency_key"] == "00:sale:6")
    counted = b.stock_master(TIN, "00", "stock-take", item_cd=item_code(1), rsd_qty=Decimal(1))
    records.insert(middle, counted)
    pipeline.enqueue(records)

    pipeline.drain()

    # Then KRA was told, and refused it (910), although later stock masters of the item waited
    stock_take = pipeline.job("stock-take")
    assert stock_take.state == "dead" and stock_take.result_code == "910"
    assert "rsdQty" in stock_take.result_message
    # ... while the relay's own counts around it were still coalesced
    assert pipeline.job(f"00:sale:4:stock-master:{item_code(1)}").state == "superseded"
    assert pipeline.job(f"00:sale:8:stock-master:{item_code(1)}").state == "superseded"
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_stock_master_with_an_unknown_outcome_is_resent_not_superseded(
    pipeline: Pipeline,
) -> None:
    # Given each item's first stock master is at KRA (sales alternate: odd ones item 2)
    records = backlog(8)
    pipeline.enqueue(records[: 3 + 3 * 2])
    pipeline.drain()
    # ... and the next stock master reaches KRA but its answer is lost, and its resend is due
    # only later
    pipeline.runtime.settings.retry.base_s = 30
    pipeline.runtime.settings.retry.cap_s = 30
    pipeline.sim.add_fault(endpoint="saveStockMaster", kind="lost_answer", times=1)
    pipeline.enqueue(records[9:12])  # sale 3 (item 2), its stock-out and stock master
    with pipeline.runtime.engine.connect() as conn:
        branch_id = int(q.get_branch(conn, TIN, "00").id)
    # one drain, its clock standing still and no inline wait: the resend (backoff drawn
    # between 0 and 30 s) is never due within it, however short the draw
    frozen = time.time()
    now_only = dataclasses.replace(
        pipeline.runtime.drain_context(), clock=lambda: frozen, sleep=lambda s: None
    )
    pipeline.runtime.settings.drain.inline_wait_s = 0.0
    assert drain(branch_id, now_only).status == "waiting"
    in_doubt = pipeline.job(f"00:sale:3:stock-master:{item_code(2)}")
    assert in_doubt.state == "unknown" and in_doubt.maybe_recorded

    # When later stock masters of the same item are enqueued behind it, and the branch drains
    # once the resend is due
    pipeline.enqueue(records[12:])  # sales 4..8
    later = dataclasses.replace(
        pipeline.runtime.drain_context(), clock=lambda: time.time() + 60, sleep=lambda s: None
    )
    for _ in range(5):
        if drain(branch_id, later).status == "idle":
            break

    # Then the one in doubt was resent byte for byte and accepted, never superseded
    resent = pipeline.job(in_doubt.idempotency_key)
    assert resent.state == "accepted" and resent.superseded_by is None
    with pipeline.runtime.engine.connect() as conn:
        sends = oq.job_attempts(conn, resent.id)
    assert len(sends) == 2 and len({a.request_hash for a in sends}) == 1
    # ... and the later ones that were never sent gave way to each item's last one
    master = {
        n: pipeline.job(f"00:sale:{n}:stock-master:{item_code(1 + n % ITEMS)}") for n in range(4, 9)
    }
    assert {n: m.state for n, m in master.items()} == {
        4: "superseded",
        5: "superseded",
        6: "superseded",
        7: "accepted",
        8: "accepted",
    }
    assert master[5].superseded_by == master[7].id
    assert master[4].superseded_by == master[6].superseded_by == master[8].id
    assert_kra_agrees_with_the_outbox(pipeline)


def test_superseding_keeps_stock_before_sale_on_a_host_that_checks_it(pipeline_factory) -> None:
    # Given a host that refuses a sale of goods it holds no stock for (live GavaConnect)
    p = pipeline_factory(stock_before_sale=True)
    p.enqueue(backlog())

    p.drain()

    # Then nothing was refused, and stock masters were still coalesced
    assert set(p.states().values()) == {"accepted", "superseded"}
    assert len(writes(p, "saveStockMaster")) == 2 * ITEMS
    assert_kra_agrees_with_the_outbox(p)


def test_the_api_and_a_till_see_a_superseded_job_done_once_its_carrier_is_accepted(
    pipeline: Pipeline,
) -> None:
    from producers.till.spool import till_state

    pipeline.enqueue(backlog())
    pipeline.drain()
    superseded = pipeline.job(f"00:sale:3:stock-master:{item_code(2)}")
    carrier = pipeline.job(f"00:sale:{SALES - 1}:stock-master:{item_code(2)}")
    assert superseded.state == "superseded"

    server = start_intake(str(pipeline.runtime.engine.url.render_as_string(hide_password=False)))
    try:
        client = server.client(server.key(admin=True))
        view = client.get(f"/v1/jobs/{superseded.id}").json()
    finally:
        server.stop()

    assert view["state"] == "superseded"
    assert view["superseded_by"] == carrier.id
    assert view["carried_by"] == {"job_id": carrier.id, "state": "accepted"}
    assert till_state(view) == "superseded"
    # ... while a carrier still on its way keeps the till waiting, in the carrier's state
    assert till_state({**view, "carried_by": {"job_id": carrier.id, "state": "pending"}}) == (
        "pending"
    )


@pytest.mark.parametrize("coalesce", [True, False])
def test_status_counts_superseded_jobs(pipeline: Pipeline, coalesce: bool) -> None:
    pipeline.runtime.settings.coalesce.stock_master = coalesce
    pipeline.enqueue(backlog())
    pipeline.drain()
    with pipeline.runtime.engine.connect() as conn:
        counts = oq.job_counts(conn)
    assert counts["superseded"] == (SALES - 2 * ITEMS if coalesce else 0)


def stock_masters_at_kra(p: Pipeline) -> list[tuple[str, int]]:
    return [(w["body"]["itemCd"], w["body"]["rsdQty"]) for w in writes(p, "saveStockMaster")]


def item_a_reported_then_moved(p: Pipeline) -> None:
    """Items A and B with opening stock (A 50, B 7) and A's first stock master at KRA; then 5
    more of A come in and its stock master ``x`` waits (not drained)."""
    a, b_ = item_code(1), item_code(2)
    lines = [
        b.SaleLine(a, "A", Decimal(50), Decimal("116")),
        b.SaleLine(b_, "B", Decimal(7), Decimal("116")),
    ]
    p.enqueue(
        [
            b.item(TIN, "00", "ia", item_cd=a, item_nm="A", price=Decimal("116")),
            b.item(TIN, "00", "ib", item_cd=b_, item_nm="B", price=Decimal("116")),
            b.stock_io(TIN, "00", "open", lines, sar_ty_cd="06", at=NOW, depends_on=["ia", "ib"]),
            b.stock_master(TIN, "00", "first", item_cd=a, depends_on=["open"]),
        ]
    )
    p.drain()
    assert p.job("first").state == "accepted"
    more = [b.SaleLine(a, "A", Decimal(5), Decimal("116"))]
    p.enqueue(
        [
            b.stock_io(TIN, "00", "more", more, sar_ty_cd="06", at=NOW),
            b.stock_master(TIN, "00", "x", item_cd=a, depends_on=["more"]),
        ]
    )


def a_dead_stock_master_of_item_a(p: Pipeline) -> int:
    """A stock master of A enqueued before A exists at KRA: it dies (edited and replayed by
    the tests below)."""
    p.enqueue([b.stock_master(TIN, "00", "y", item_cd=item_code(1))])
    p.drain()
    assert p.job("y").state == "dead"
    return p.job("y").id


def test_a_stock_master_edited_to_another_item_never_supersedes_the_first_items(
    pipeline: Pipeline,
) -> None:
    # Given a dead stock master of item A that the operator edits: it was meant for item B
    y = a_dead_stock_master_of_item_a(pipeline)
    edit(pipeline.runtime.engine, y, OPS, sets=[("itemCd", item_code(2))], reason="wrong item")
    # ... while A's stock master x waits behind A's movement, and y is replayed behind it
    item_a_reported_then_moved(pipeline)
    replay(pipeline.runtime.engine, y, OPS, reason="fixed")

    pipeline.drain()

    # Then x was sent (y is B's, it carries nothing of A), and KRA holds both true balances
    assert pipeline.job("x").state == "accepted"
    assert pipeline.job("y").state == "accepted"
    assert stock_masters_at_kra(pipeline)[-2:] == [(item_code(1), 55), (item_code(2), 7)]
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_stock_master_edited_into_a_producers_count_never_supersedes(
    pipeline: Pipeline,
) -> None:
    # Given a dead stock master of item A that the operator edits into a counted one
    y = a_dead_stock_master_of_item_a(pipeline)
    edit(pipeline.runtime.engine, y, OPS, sets=[("rsdQty", 55)], reason="stock-take")
    item_a_reported_then_moved(pipeline)
    replay(pipeline.runtime.engine, y, OPS, reason="fixed")

    pipeline.drain()

    # Then the relay's own count x still went: a producer's count supersedes nothing
    assert pipeline.job("x").state == "accepted"
    assert pipeline.job("y").state == "accepted"
    assert stock_masters_at_kra(pipeline)[-2:] == [(item_code(1), 55), (item_code(1), 55)]


def test_a_later_stock_master_that_can_never_go_supersedes_nothing(pipeline: Pipeline) -> None:
    # Given item A at KRA, and a stock movement of A that KRA refused (dead)
    a = item_code(1)
    pipeline.enqueue(
        [
            b.item(TIN, "00", "ia", item_cd=a, item_nm="A", price=Decimal("116")),
            b.stock_io(
                TIN,
                "00",
                "open",
                [b.SaleLine(a, "A", Decimal(50), Decimal("116"))],
                sar_ty_cd="06",
                at=NOW,
                depends_on=["ia"],
            ),
            b.stock_master(TIN, "00", "first", item_cd=a, depends_on=["open"]),
            b.stock_io(
                TIN,
                "00",
                "bad",
                [b.SaleLine(a, "A", Decimal(5), Decimal("116"))],
                sar_ty_cd="11",
                at=NOW,
            ),
        ]
    )
    pipeline.drain()
    assert pipeline.job("bad").state == "dead"
    # ... then A comes in 5 and its stock master x waits, with a later one that waits on the
    # dead movement behind it
    pipeline.enqueue(
        [
            b.stock_io(
                TIN,
                "00",
                "in",
                [b.SaleLine(a, "A", Decimal(5), Decimal("116"))],
                sar_ty_cd="06",
                at=NOW,
            ),
            b.stock_master(TIN, "00", "x", item_cd=a, depends_on=["in"]),
            b.stock_master(TIN, "00", "after-bad", item_cd=a, depends_on=["bad"]),
        ]
    )

    pipeline.drain()

    # Then x went: the later one is blocked for good, and KRA holds A's balance
    assert pipeline.job("x").state == "accepted"
    assert pipeline.job("after-bad").state == "blocked"
    assert stock_masters_at_kra(pipeline)[-1] == (a, 55)


class _DependentArrivesAfterTheFacts:
    """The branch's store, except that right after the first read that would supersede a
    stock master, a till enqueues a stock-in that depends on that stock master (the race
    between coalescing's read and its write)."""

    def __init__(self, store: Any, p: Pipeline) -> None:
        self._store, self._p = store, p
        self.raced: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def stock_master_facts(self, lease: Any, job: Any, item_cd: str) -> Any:
        facts = self._store.stock_master_facts(lease, job, item_cd)
        if self.raced is None and facts.later_id is not None and facts.item_reported:
            self.raced = str(job.idempotency_key)
            line = b.SaleLine(item_cd, "Item", Decimal(7), Decimal("116"))
            restock = b.stock_io(
                TIN, "00", "restock", [line], sar_ty_cd="06", at=NOW, depends_on=[self.raced]
            )
            restocked = b.stock_master(
                TIN, "00", "restocked", item_cd=item_cd, depends_on=["restock"]
            )
            self._p.enqueue([restock, restocked])
        return facts


def test_a_stock_master_that_gains_a_dependent_while_being_coalesced_is_sent(
    pipeline: Pipeline,
) -> None:
    # Given a backlog, and a stock-in enqueued against a stock master just after the drain
    # read that a later one could supersede it
    pipeline.enqueue(backlog())
    with pipeline.runtime.engine.connect() as conn:
        branch_id = int(q.get_branch(conn, TIN, "00").id)
    ctx = pipeline.runtime.drain_context()
    racing = _DependentArrivesAfterTheFacts(ctx.store, pipeline)
    ctx.store = racing

    for _ in range(20):
        if drain(branch_id, ctx).status == "idle":
            break

    # Then that stock master went to KRA (the stock-in asked for it first), and the stock-in
    # after it; KRA still ends with the outbox's balances
    assert racing.raced is not None
    raced = pipeline.job(racing.raced)
    assert raced.state == "accepted" and raced.superseded_by is None
    assert pipeline.job("restock").state == "accepted"
    assert pipeline.job("restock").seq > raced.seq
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_till_keeps_waiting_on_a_chain_longer_than_the_relay_follows(
    pipeline: Pipeline,
) -> None:
    from producers.till.spool import FINAL_JOB_STATES, till_state
    from worker.outbox.coalesce_queries import superseding_job

    pipeline.enqueue(backlog())
    pipeline.drain()
    superseded = pipeline.job(f"00:sale:3:stock-master:{item_code(2)}")
    assert superseded.state == "superseded"

    # When the chain to the carrier is longer than followed
    with pipeline.runtime.engine.connect() as conn:
        found = superseding_job(conn, superseded.id, max_hops=0)

    # Then it is reported as not final: the till keeps asking
    assert found is not None
    view = {"state": "superseded", "carried_by": {"job_id": found[0], "state": found[1]}}
    assert till_state(view) not in FINAL_JOB_STATES


def test_a_job_elsewhere_that_depends_on_a_superseded_stock_master_waits_for_its_carrier(
    pipeline_factory: Any,
) -> None:
    # Given item A at KRA from branch 00, then a stock-in of A and its stock master x, and a
    # later stock master y of A that also waits on an item still to send from branch 01
    p = pipeline_factory(branches=("00", "01", "02"))
    a = item_code(1)
    gate = b.item(TIN, "01", "gate", item_cd=item_code(8), item_nm="Gate", price=Decimal("1"))
    p.enqueue(
        [
            b.item(TIN, "00", "ia", item_cd=a, item_nm="A", price=Decimal("116")),
            b.stock_io(
                TIN,
                "00",
                "open",
                [b.SaleLine(a, "A", Decimal(50), Decimal("116"))],
                sar_ty_cd="06",
                at=NOW,
                depends_on=["ia"],
            ),
            b.stock_master(TIN, "00", "first", item_cd=a, depends_on=["open"]),
            b.stock_io(
                TIN,
                "00",
                "more",
                [b.SaleLine(a, "A", Decimal(5), Decimal("116"))],
                sar_ty_cd="06",
                at=NOW,
            ),
            b.stock_master(TIN, "00", "x", item_cd=a, depends_on=["more"]),
            gate,
            b.stock_master(TIN, "00", "y", item_cd=a, depends_on=["gate"]),
        ]
    )
    p.drain("00")
    assert p.job("x").state == "superseded" and p.job("x").superseded_by == p.job("y").id
    assert p.job("y").state == "pending"

    # When branch 02 enqueues a job that depends on x, and drains
    later = b.item(TIN, "02", "after-x", item_cd=item_code(9), item_nm="B", price=Decimal("1"))
    p.enqueue([{**later, "depends_on": ["x"]}])
    p.drain("02")

    # Then it waits: x's balance is not at KRA yet
    assert p.job("after-x").state == "pending"
    assert writes(p, "saveItem")[-1]["body"]["itemCd"] != item_code(9)

    # ... and goes once y, which carries it, is accepted
    p.drain("01")
    p.drain("00")
    assert p.job("y").state == "accepted"
    p.drain("02")
    assert p.job("after-x").state == "accepted"
