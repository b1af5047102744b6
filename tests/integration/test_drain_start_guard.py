"""An operator acting between a drain's head read and its in_flight mark, on SQLite and
PostgreSQL: the mark is compare-and-set on the job as read, and on a lease that still holds,
so the operator's change stands and no number reaches KRA twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.pipeline_fixtures import Pipeline
from tests.integration.test_drain_behaviour import (
    GHOST,
    NOW,
    OPS,
    TIN,
    WATER,
    b,
    registered_stock,
    sales_of,
)
from worker.outbox import ops_queries as oq
from worker.outbox import queries as q
from worker.outbox.rows import BranchHead, HeadMoved, Lease
from worker.outbox.writes import JobRecord, Kill, Number, Start
from worker.replay import OperatorError, set_next, skip


def sale_holding_invoice_1_without_body(pipeline: Pipeline) -> None:
    """The stock is at KRA; sale s1 heads the branch holding invcNo 1 with no frozen body,
    as a park that rebuilds the body leaves it once unparked (next_invc_no is 2)."""
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])
    with pipeline.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET invc_no = 1 WHERE idempotency_key = 's1'"))
        conn.execute(text("UPDATE branches SET next_invc_no = 2"))


def right_after_the_first_head_read(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, act: Callable[[BranchHead], None]
) -> None:
    """Run ``act`` once, just after the drain first reads a head with a job in it."""
    store_class = type(pipeline.runtime.drain_context().store)
    read_head = store_class.read_head
    done: list[bool] = []

    def read_head_then_act(store: Any, lease: Lease) -> BranchHead:
        head = read_head(store, lease)
        if not done and head.jobs:
            done.append(True)
            act(head)
        return head

    monkeypatch.setattr(store_class, "read_head", read_head_then_act)


def test_set_next_while_a_drain_outlived_its_lease_gives_the_sale_the_number_set(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sale holding invcNo 1 (never sent), and a drain that has just read that sale at
    # the head, then stalls past its lease; an operator, seeing the branch no longer
    # drained, sets the branch's next number to 1 meanwhile
    sale_holding_invoice_1_without_body(pipeline)

    def lease_runs_out_and_operator_sets_next(head: BranchHead) -> None:
        with pipeline.runtime.engine.begin() as conn:
            conn.execute(text("UPDATE branches SET lease_until = 1"))
        set_next(pipeline.runtime.engine, TIN, "00", OPS, invc_no=1, sar_no=None, reason="x")

    right_after_the_first_head_read(pipeline, monkeypatch, lease_runs_out_and_operator_sets_next)

    # When the branch drains, and a second sale follows
    pipeline.drain()
    monkeypatch.undo()
    pipeline.enqueue([b.sale(TIN, "00", "s2", [WATER], trd_invc_no="T2", at=NOW)])
    pipeline.drain()

    # Then the first sale took 1 from the counter as set, the second took 2: both accepted,
    # no number sent twice, the branch not parked
    assert sales_of(pipeline) == [(1, "T1"), (2, "T2")]
    s1, s2 = pipeline.job("s1"), pipeline.job("s2")
    assert (s1.state, s1.invc_no) == ("accepted", 1)
    assert (s2.state, s2.invc_no) == ("accepted", 2)
    assert pipeline.branch().next_invc_no == 3
    assert pipeline.branch().parked_reason is None


def test_skip_while_a_drain_outlived_its_lease_stands_and_nothing_is_sent(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a drain that has read sale s1 at the head, then stalls past its lease; an
    # operator, seeing the branch no longer drained, skips s1 meanwhile
    sale_holding_invoice_1_without_body(pipeline)
    skipped: list[Any] = []

    def lease_runs_out_and_operator_skips(head: BranchHead) -> None:
        with pipeline.runtime.engine.begin() as conn:
            conn.execute(text("UPDATE branches SET lease_until = 1"))
        skipped.append(skip(pipeline.runtime.engine, head.jobs[0].id, OPS, reason="x"))

    right_after_the_first_head_read(pipeline, monkeypatch, lease_runs_out_and_operator_skips)

    # When that drain goes on
    report = pipeline.drain()

    # Then it sent nothing: the skip stands, invcNo 1 went back to the counter
    assert skipped and skipped[0].released
    assert sales_of(pipeline) == []
    assert pipeline.job("s1").state == "skipped"
    assert pipeline.branch().next_invc_no == 1
    assert report.status == "idle"

    # ... and the next sale gets invcNo 1, once
    monkeypatch.undo()
    pipeline.enqueue([b.sale(TIN, "00", "s2", [WATER], trd_invc_no="T2", at=NOW)])
    pipeline.drain()
    assert sales_of(pipeline) == [(1, "T2")]


def test_a_start_that_waited_on_an_operators_skip_writes_nothing(pipeline: Pipeline) -> None:
    # Given a sale at the head, about to take invcNo 1, and an operator's skip of it that
    # holds the branch row (then the job) in an open transaction, as `skip` does
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])
    engine, store = pipeline.runtime.engine, pipeline.runtime.drain_context().store
    lease = store.claim(pipeline.branch().id, "drain", time.time(), 60.0)
    assert lease is not None
    job = store.read_head(lease).jobs[0]
    start = Start(job.id, 1, False, "{}", Number("invcNo", 1), None, job.state, None, None)
    outcome: list[object] = []

    def drain_starts_the_sale() -> None:
        try:
            store.start(lease, start, time.time())
            outcome.append("started")
        except HeadMoved as exc:
            outcome.append(exc)

    with engine.connect() as operator:
        with operator.begin():
            q.get_branch(operator, TIN, "00", for_update=True)
            oq.mark_skipped(operator, job.id, "x", time.time(), states=["pending"])
            # When the drain's start runs meanwhile (it waits for the operator's locks)
            drain = threading.Thread(target=drain_starts_the_sale)
            drain.start()
            time.sleep(0.5)
            assert drain.is_alive()
        drain.join(30)

    # Then, once the skip commits, the start writes nothing: the sale stays skipped with no
    # number, and the branch's next invcNo is still 1
    assert len(outcome) == 1 and isinstance(outcome[0], HeadMoved)
    s1 = pipeline.job("s1")
    assert (s1.state, s1.invc_no, s1.body) == ("skipped", None, None)
    assert pipeline.branch().next_invc_no == 1


def sale_x_held_up_by_a_dead_sale(pipeline: Pipeline) -> None:
    """Sale d died at KRA (unregistered item); sale x, which depends on it, heads the branch
    holding invcNo 1, never sent (next_invc_no is 2)."""
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([b.sale(TIN, "00", "d", [GHOST], trd_invc_no="D", at=NOW)])
    pipeline.drain()
    assert pipeline.job("d").state == "dead"
    pipeline.enqueue([b.sale(TIN, "00", "x", [WATER], trd_invc_no="X", at=NOW, depends_on=["d"])])
    with pipeline.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET invc_no = 1 WHERE idempotency_key = 'x'"))
        conn.execute(text("UPDATE branches SET next_invc_no = 2"))


def test_skip_while_a_drain_outlived_its_lease_stands_against_its_block(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a drain that has read sale x (its dependency dead) at the head, then stalls past
    # its lease; an operator, seeing the branch no longer drained, skips x meanwhile
    sale_x_held_up_by_a_dead_sale(pipeline)
    skipped: list[Any] = []

    def lease_runs_out_and_operator_skips(head: BranchHead) -> None:
        with pipeline.runtime.engine.begin() as conn:
            conn.execute(text("UPDATE branches SET lease_until = 1"))
        skipped.append(skip(pipeline.runtime.engine, head.jobs[0].id, OPS, reason="x"))

    right_after_the_first_head_read(pipeline, monkeypatch, lease_runs_out_and_operator_skips)

    # When that drain goes on (it would block x), and a next sale follows
    pipeline.drain()
    monkeypatch.undo()
    pipeline.enqueue([b.sale(TIN, "00", "s2", [WATER], trd_invc_no="S2", at=NOW)])
    pipeline.drain()

    # Then the skip stands: x is skipped holding no number, and invcNo 1 went to s2, once
    assert skipped and skipped[0].released
    x = pipeline.job("x")
    assert (x.state, x.invc_no) == ("skipped", None)
    assert (pipeline.job("s2").state, pipeline.job("s2").invc_no) == ("accepted", 1)
    assert sales_of(pipeline) == [(1, "S2")]


def test_a_block_that_waited_on_an_operators_skip_writes_nothing(pipeline: Pipeline) -> None:
    # Given a drain that read sale x (its dependency dead) at the head, and an operator's
    # skip of x committed before the drain blocks it
    sale_x_held_up_by_a_dead_sale(pipeline)
    store = pipeline.runtime.drain_context().store
    lease = store.claim(pipeline.branch().id, "drain", time.time(), 60.0)
    assert lease is not None
    job = store.read_head(lease).jobs[0]
    with pipeline.runtime.engine.begin() as operator:
        oq.mark_skipped(operator, job.id, "x", time.time(), states=["pending"])

    # When the drain blocks it, then Then it is told the head moved and writes nothing
    with pytest.raises(HeadMoved):
        store.block(lease, job, pipeline.job("d").id, time.time())
    assert pipeline.job("x").state == "skipped"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_skip_keeps_the_number_of_a_sale_a_drain_sent_while_the_skip_waited_for_the_lock(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given sale s1 holding invcNo 1, never sent, and an operator's skip of it that reads
    # the job, then waits for the branch row while a drain sends s1 (answer lost: it may be
    # at KRA) and lets the branch go
    sale_holding_invoice_1_without_body(pipeline)
    engine = pipeline.runtime.engine
    get_branch = q.get_branch

    def drain_sends_s1_then_lock(conn: Any, *args: Any, **kwargs: Any) -> Any:
        with engine.begin() as drain:
            drain.execute(
                text(
                    "UPDATE jobs SET state = 'unknown', maybe_recorded = TRUE, body = '{}'"
                    " WHERE idempotency_key = 's1'"
                )
            )
        return get_branch(conn, *args, **kwargs)

    monkeypatch.setattr(q, "get_branch", drain_sends_s1_then_lock)

    # When the skip goes on
    done = skip(engine, pipeline.job("s1").id, OPS, reason="x")

    # Then invcNo 1 is not handed to the next sale: KRA may hold it for s1
    assert not done.released
    assert pipeline.branch().next_invc_no == 2
    assert "may be at KRA and is not reused" in done.describe()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_skip_and_a_stalled_drain_recording_the_same_sale_wait_for_each_other(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given sale s1 out at KRA under invcNo 1, sent by a drain that then stalled past its
    # lease; an operator's skip of s1 has locked the branch when that drain records KRA's
    # refusal of s1, which gives invcNo 1 back
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])
    engine, store = pipeline.runtime.engine, pipeline.runtime.drain_context().store
    lease = store.claim(pipeline.branch().id, "drain", time.time(), 60.0)
    assert lease is not None
    job = store.read_head(lease).jobs[0]
    start = Start(job.id, 1, False, "{}", Number("invcNo", 1), None, job.state, None, None)
    store.start(lease, start, time.time())
    with engine.begin() as conn:
        conn.execute(text("UPDATE branches SET lease_until = 1"))
    refusal = Kill("910", "refused", "release", gives_back=Number("invcNo", 1))
    recorded: list[object] = []

    def drain_records() -> None:
        try:
            store.record(lease, JobRecord(job, time.time(), refusal, None))
            recorded.append("recorded")
        except Exception as exc:  # a deadlock victim: what this test must never see
            recorded.append(exc)

    drain = threading.Thread(target=drain_records)
    get_branch = q.get_branch

    def lock_branch_then_let_the_drain_record(conn: Any, *args: Any, **kwargs: Any) -> Any:
        branch = get_branch(conn, *args, **kwargs)
        if kwargs.get("for_update") and drain.ident is None:
            drain.start()
            time.sleep(0.5)
        return branch

    monkeypatch.setattr(q, "get_branch", lock_branch_then_let_the_drain_record)

    # When the skip goes on
    with pytest.raises(OperatorError, match="only dead, blocked or pending jobs"):
        skip(engine, job.id, OPS, reason="x")
    drain.join(30)

    # Then neither was chosen as a deadlock victim: the skip was refused (s1 is out), and
    # the drain's record landed: s1 dead, invcNo 1 back on the counter
    assert recorded == ["recorded"]
    assert pipeline.job("s1").state == "dead"
    assert pipeline.branch().next_invc_no == 1
