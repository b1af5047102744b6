"""The fused step, on SQLite and PostgreSQL: a job's acceptance carries the next job's start,
planned from the head read before the accepted job went out. What an operator did in between
stands, a lost lease writes nothing, KRA's numbers stay gap-free and in order, and a start
that was written but never sent is resent byte for byte."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from producers import builders as b
from simulator.verify import verify_ledger
from tests.helpers import ledger_writes
from tests.integration.pipeline_fixtures import Pipeline
from tests.integration.test_drain_behaviour import NOW, OPS, WATER, registered_stock
from tests.workload import TIN, item_code
from worker.drain import drain
from worker.outbox import ops_queries as oq
from worker.outbox.rows import Lease
from worker.outbox.writes import JobRecord, Recorded
from worker.replay import skip

SALE = "saveTrnsSalesOsdc"
#: a stock master made moot by a later one of its item ends superseded (coalescing is on)
DONE = {"accepted", "superseded"}


def sales(p: Pipeline) -> list[tuple[int, str]]:
    return [
        (w["body"]["invcNo"], w["body"]["trdInvcNo"])
        for w in ledger_writes(p.sim.ledger_path, [SALE])
    ]


def sale(key: str) -> dict[str, Any]:
    return b.sale(TIN, "00", key, [WATER], trd_invc_no=key.upper(), at=NOW)


@dataclass
class FusedRecords:
    """What the drain's records carried: the next job's start, and whether it took."""

    planned: list[str]
    took: list[str]


def watch_fused_records(
    p: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    before: Callable[[JobRecord], None] | None = None,
) -> FusedRecords:
    """Spy on the store's records that carry a next start; run ``before`` ahead of the first
    one (between the drain's plan and its record)."""
    store_class = type(p.runtime.drain_context().store)
    real = store_class.record
    seen = FusedRecords([], [])
    keys: dict[int, str] = {}

    def record(store: Any, lease: Lease, rec: JobRecord) -> Recorded:
        if rec.then is None:
            return real(store, lease, rec)
        with p.runtime.engine.connect() as conn:
            key = conn.execute(
                text("SELECT idempotency_key FROM jobs WHERE id = :id"), {"id": rec.then.job_id}
            ).scalar_one()
        keys[rec.then.job_id] = key
        if before is not None and not seen.planned:
            before(rec)
        seen.planned.append(key)
        recorded = real(store, lease, rec)
        if recorded.started:
            seen.took.append(key)
        return recorded

    monkeypatch.setattr(store_class, "record", record)
    return seen


def test_a_skip_between_the_plan_and_the_record_stands_and_the_acceptance_lands(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three sales; while KRA answers s1 the drain stalls past its lease, and an
    # operator, seeing the branch no longer drained, skips s2 (planned to start with s1's
    # acceptance)
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([sale("s1"), sale("s2"), sale("s3")])

    def lease_runs_out_and_operator_skips_s2(rec: JobRecord) -> None:
        with pipeline.runtime.engine.begin() as conn:
            conn.execute(text("UPDATE branches SET lease_until = 1"))
        skip(pipeline.runtime.engine, pipeline.job("s2").id, OPS, reason="customer cancelled")

    fused = watch_fused_records(pipeline, monkeypatch, lease_runs_out_and_operator_skips_s2)

    # When the branch drains
    report = drain(pipeline.branch().id, pipeline.runtime.drain_context())

    # Then s1's acceptance landed, s2's start did not: s2 stays skipped, holding no number,
    # and the drain, its lease gone, sent nothing more
    assert fused.planned[:1] == ["s2"] and "s2" not in fused.took
    s1, s2 = pipeline.job("s1"), pipeline.job("s2")
    assert (s1.state, s1.invc_no) == ("accepted", 1)
    assert (s2.state, s2.invc_no, s2.body) == ("skipped", None, None)
    assert report.status == "lease_lost" and report.sent == 1
    assert sales(pipeline) == [(1, "S1")]

    # ... and the next drain sends s3 under invcNo 2, once
    monkeypatch.undo()
    pipeline.drain()
    assert sales(pipeline) == [(1, "S1"), (2, "S3")]
    assert verify_ledger(pipeline.sim.ledger_path).ok


@pytest.mark.parametrize("change", ["job skipped", "counter moved"])
def test_an_operators_write_committed_between_the_plan_and_the_record_refuses_the_start(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    # Given three sales, and a write committed under the drain's live lease just before the
    # record that carries s2's start: s2 skipped (the row an operator's skip writes), or
    # the branch's next invcNo moved on (as a set-next would) -- what the start's
    # compare-and-set on the job and on the counter are for
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([sale("s1"), sale("s2"), sale("s3")])

    def operator_writes(rec: JobRecord) -> None:
        s2_id = pipeline.job("s2").id
        with pipeline.runtime.engine.begin() as conn:
            if change == "job skipped":
                oq.mark_skipped(conn, s2_id, "x", 0.0, states=["pending"])
            else:
                conn.execute(text("UPDATE branches SET next_invc_no = 7"))

    fused = watch_fused_records(pipeline, monkeypatch, operator_writes)

    # When the branch drains
    pipeline.drain()

    # Then s1 is accepted all the same and s2's start wrote nothing: the drain read the head
    # again and went on from what the operator left
    assert fused.planned[0] == "s2" and fused.took[:1] != ["s2"]
    assert pipeline.job("s1").state == "accepted"
    if change == "job skipped":
        assert pipeline.job("s2").state == "skipped"
        assert sales(pipeline) == [(1, "S1"), (2, "S3")]
    else:
        # s2 was built again with the counter's 7, not the planned 2; KRA, expecting 2,
        # refused it and the branch parks for an operator, s2 holding no number
        assert sales(pipeline) == [(1, "S1")]
        assert "expected: 2 but found: 7" in pipeline.branch().parked_reason
        assert (pipeline.job("s2").state, pipeline.job("s2").invc_no) == ("pending", None)
    assert verify_ledger(pipeline.sim.ledger_path).ok


def test_a_drain_that_lost_its_lease_writes_neither_the_acceptance_nor_the_start(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two sales, and another worker taking the branch over while KRA answers s1
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([sale("s1"), sale("s2")])
    branch_before: list[Any] = []

    def taken_over(rec: JobRecord) -> None:
        store = pipeline.runtime.drain_context().store
        with pipeline.runtime.engine.begin() as conn:
            conn.execute(text("UPDATE branches SET lease_until = 1"))
        assert store.claim(pipeline.branch().id, "other-worker", 10.0**10, 60.0) is not None
        branch_before.append(pipeline.branch())

    fused = watch_fused_records(pipeline, monkeypatch, taken_over)

    # When the drain records s1 with s2's start
    report = drain(pipeline.branch().id, pipeline.runtime.drain_context())

    # Then none of it landed: s1 in_flight (the new holder resends it), s2 pending with no
    # number, the counter and the lease as the new holder left them, no event for s1
    assert fused.planned == ["s2"] and fused.took == []
    assert report.status == "lease_lost"
    assert pipeline.job("s1").state == "in_flight"
    s2 = pipeline.job("s2")
    assert (s2.state, s2.invc_no, s2.body) == ("pending", None, None)
    after = pipeline.branch()
    before = branch_before[0]
    assert (after.next_invc_no, after.lease_until, after.fencing_token) == (
        before.next_invc_no, before.lease_until, before.fencing_token,
    )  # fmt: skip
    with pipeline.runtime.engine.connect() as conn:
        events = conn.execute(
            text("SELECT count(*) FROM result_events WHERE job_id = :id"),
            {"id": pipeline.job("s1").id},
        ).scalar_one()
    assert events == 0


def test_numbers_stay_gap_free_and_in_order_at_kra_with_the_fused_step(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given sales with their stock-outs and stock masters, a stock-in, and faults on the way
    # (the first sale's answer lost after KRA recorded it, then a 500 on the next sale call)
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    records: list[dict[str, Any]] = []
    for i in range(1, 9):
        records += b.sale_with_stock(TIN, "00", f"s{i}", [WATER], trd_invc_no=f"T{i}", at=NOW)
        if i == 4:
            records.append(
                b.stock_io(
                    TIN, "00", "restock",
                    [b.SaleLine(item_code(1), "Water", Decimal("5"), WATER.prc)],
                    sar_ty_cd="06", at=NOW,
                )
            )  # fmt: skip
    pipeline.enqueue(records)
    faults = [
        {"endpoint": SALE, "kind": "lost_answer", "times": 1},
        {"endpoint": SALE, "kind": "http_error", "status": 500, "times": 1},
    ]
    httpx.post(f"{pipeline.sim.url}/__admin/faults", json=faults, timeout=5).raise_for_status()
    fused = watch_fused_records(pipeline, monkeypatch)

    # When the branch drains (a retry may wait: drain until idle)
    for _ in range(30):
        if pipeline.drain().status == "idle" and set(pipeline.states().values()) <= DONE:
            break

    # Then most starts rode on the acceptance before them, and KRA holds invcNo 1..8 in
    # trader-invoice order, sarNo without gap, each once: the ledger verifies
    assert len(fused.took) >= 10, fused
    assert set(pipeline.states().values()) <= DONE
    assert sales(pipeline) == [(i, f"T{i}") for i in range(1, 9)]
    report = verify_ledger(pipeline.sim.ledger_path)
    assert report.ok, report.violations


class Crash(BaseException):
    """The worker process dies (no exception handler of the drain runs)."""


def test_a_crash_after_the_fused_record_resends_the_started_job_with_the_identical_body(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two sales, and a worker that dies once s2's start rode on s1's acceptance,
    # before s2's call
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([sale("s1"), sale("s2"), sale("s3")])
    fused = watch_fused_records(pipeline, monkeypatch)
    ctx = pipeline.runtime.drain_context()
    real_call = ctx.client.call

    def dies_before_s2(endpoint: str, body: Any, **kw: Any) -> Any:
        if body.get("trdInvcNo") == "S2":
            raise Crash
        return real_call(endpoint, body, **kw)

    monkeypatch.setattr(ctx.client, "call", dies_before_s2)
    with pytest.raises(Crash):
        drain(pipeline.branch().id, ctx)
    assert fused.took == ["s2"]
    s2 = pipeline.job("s2")
    assert (s2.state, s2.invc_no) == ("in_flight", 2)
    frozen = s2.body

    # When its lease runs out and another drain takes the branch
    monkeypatch.undo()
    with pipeline.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE branches SET lease_until = 1"))
    pipeline.drain()

    # Then s2 went to KRA once, under invcNo 2, with the very body frozen at its start
    writes = ledger_writes(pipeline.sim.ledger_path, [SALE])
    assert [(w["body"]["invcNo"], w["body"]["trdInvcNo"]) for w in writes] == [
        (1, "S1"), (2, "S2"), (3, "S3"),
    ]  # fmt: skip
    s2 = pipeline.job("s2")
    assert (s2.state, s2.body) == ("accepted", frozen)
    assert writes[1]["body"] == json.loads(frozen)
    assert verify_ledger(pipeline.sim.ledger_path).ok


def test_a_record_that_waited_for_a_connection_still_sends_every_sale_once_in_order(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three sales, and a pool with no free connection the first time the drain records
    # s1's acceptance with s2's start (the drain waits and writes the result again)
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([sale("s1"), sale("s2"), sale("s3")])
    store_class = type(pipeline.runtime.drain_context().store)
    real = store_class.record
    tries: list[bool] = []

    def record(store: Any, lease: Lease, rec: JobRecord) -> Recorded:
        if rec.job.idempotency_key == "s1":
            tries.append(rec.then is not None)
            if len(tries) == 1:
                raise PoolTimeout("QueuePool limit reached")
        return real(store, lease, rec)

    monkeypatch.setattr(store_class, "record", record)

    # When the branch drains
    pipeline.drain()

    # Then s1's result was written on the second try, without s2's start planned for the
    # first (s2 was prepared afresh), and KRA holds each sale once, in order
    assert tries == [True, False]
    assert sales(pipeline) == [(1, "S1"), (2, "S2"), (3, "S3")]
    assert set(pipeline.states().values()) == {"accepted"}


def test_an_error_while_planning_the_next_start_does_not_cost_the_acceptance(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three sales, and planning the job after an accepted one fails (a bug, a device
    # directory error: anything but the record itself)
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([sale("s1"), sale("s2"), sale("s3")])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("planning broke")

    monkeypatch.setattr("worker.drain._head_after", broken)

    # When the branch drains, it does not fail
    assert pipeline.drain().status == "idle"

    # Then every acceptance was recorded: KRA got each sale once, in order (no resend of a
    # sale whose answer was thrown away), and each is accepted
    assert sales(pipeline) == [(1, "S1"), (2, "S2"), (3, "S3")]
    assert set(pipeline.states().values()) == {"accepted"}


def test_no_next_start_is_planned_when_the_lease_is_about_to_run_out(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two sales, and s1's call returning when the lease has less than one OSCU round
    # trip left (the clock jumps while KRA answers)
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue([sale("s1"), sale("s2")])
    settings = pipeline.runtime.settings
    round_trip = settings.oscu.connect_timeout_s + settings.oscu.read_timeout_s
    jump = [0.0]
    ctx = pipeline.runtime.drain_context()
    ctx = dataclasses.replace(ctx, clock=lambda: time.time() + jump[0])
    real_call = ctx.client.call

    def slow_call(endpoint: str, body: Any, **kwargs: Any) -> Any:
        outcome = real_call(endpoint, body, **kwargs)
        if body.get("trdInvcNo") == "S1":
            jump[0] = settings.drain.lease_ttl_s - round_trip / 2
        return outcome

    monkeypatch.setattr(ctx.client, "call", slow_call)
    fused = watch_fused_records(pipeline, monkeypatch)

    # When the branch drains
    drain(int(pipeline.branch().id), ctx)

    # Then s1's acceptance was recorded alone (no start riding on it), and s2 went later
    assert pipeline.job("s1").state == "accepted"
    assert fused.planned == []
    pipeline.drain()
    assert sales(pipeline) == [(1, "S1"), (2, "S2")]
