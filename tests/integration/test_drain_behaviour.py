"""What KRA sees and what the outbox says when things go wrong, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, text

from producers import builders as b
from schemas.jobs import JobState
from tests.helpers import ledger_writes
from tests.integration.pipeline_fixtures import Pipeline
from tests.workload import TIN, item_code
from worker.device_init import init_device
from worker.drain import drain
from worker.next_number import kra_confirms_next_invoice
from worker.outbox import ops_queries as oq
from worker.outbox import queries as q
from worker.outbox import writes
from worker.outbox.branch_store import BranchStore, PostgresBranchStore, SqlBranchStore
from worker.outbox.models import result_events, stock_balances
from worker.outbox.rows import BranchHead, Lease, LeaseLost
from worker.outbox.writes import AttemptRow, JobRecord, Number, Start
from worker.replay import Actor, OperatorError, replay, set_next, skip

NOW = datetime.now(UTC)
WATER = b.SaleLine(item_code(1), "Water", Decimal("1"), Decimal("116"))
GHOST = b.SaleLine(item_code(9), "Never registered", Decimal("1"), Decimal("116"))
OPS = Actor("test-operator")


def registered_stock(bhf: str = "00") -> list[dict]:
    return [
        b.item(TIN, bhf, "item-1", item_cd=item_code(1), item_nm="Water", price=Decimal("116")),
        b.stock_io(
            TIN,
            bhf,
            "opening",
            [b.SaleLine(item_code(1), "Water", Decimal("50"), Decimal("116"))],
            sar_ty_cd="06",
            at=NOW,
            depends_on=["item-1"],
        ),
    ]


def sales_of(p: Pipeline) -> list[tuple[int, str]]:
    return [
        (w["body"]["invcNo"], w["body"]["trdInvcNo"])
        for w in ledger_writes(p.sim.ledger_path, ["saveTrnsSalesOsdc"])
    ]


def test_rejected_sale_is_dead_next_sale_takes_its_number_and_replay_unblocks(
    pipeline: Pipeline,
) -> None:
    # Given a sale of an item KRA does not know (-> 910) and its stock jobs, between good sales
    records = registered_stock()
    records += b.sale_with_stock(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)
    records += b.sale_with_stock(TIN, "00", "bad", [GHOST], trd_invc_no="T2", at=NOW)
    records += b.sale_with_stock(TIN, "00", "s3", [WATER], trd_invc_no="T3", at=NOW)
    pipeline.enqueue(records)

    # When the branch drains
    pipeline.drain()

    # Then the bad sale is dead with KRA's code and message, naming the field
    bad = pipeline.job("bad")
    assert bad.state == "dead"
    assert bad.result_code == "910"
    assert "itemCd" in bad.result_message
    # ... the next sale took its number: KRA holds invcNo 1, 2 with no gap
    assert sales_of(pipeline) == [(1, "T1"), (2, "T3")]
    # ... its stock jobs are blocked, the others went on
    states = pipeline.states()
    assert states["bad:stock-out"] == "blocked"
    assert states[f"bad:stock-master:{item_code(9)}"] == "blocked"
    # ... and each says what blocks it
    assert pipeline.job("bad:stock-out").blocked_by == bad.id
    assert pipeline.job(f"bad:stock-master:{item_code(9)}").blocked_by == (
        pipeline.job("bad:stock-out").id
    )
    assert states["s3:stock-out"] == "accepted"

    # When the item is registered at KRA and the sale replayed
    pipeline.enqueue(
        [b.item(TIN, "00", "item-9", item_cd=item_code(9), item_nm="Ghost", price=Decimal("116"))]
    )
    pipeline.enqueue(
        [
            b.stock_io(
                TIN,
                "00",
                "opening-9",
                [b.SaleLine(item_code(9), "Ghost", Decimal("5"), Decimal("116"))],
                sar_ty_cd="06",
                at=NOW,
                depends_on=["item-9"],
            )
        ]
    )
    pipeline.drain()
    replay(pipeline.runtime.engine, bad.id, OPS, reason="item registered")
    pipeline.drain()

    # Then the sale is accepted under the next number and its blocked stock jobs followed it
    assert sales_of(pipeline) == [(1, "T1"), (2, "T3"), (3, "T2")]
    states = pipeline.states()
    assert states["bad"] == "accepted"
    assert states["bad:stock-out"] == "accepted"
    assert states[f"bad:stock-master:{item_code(9)}"] == "accepted"


def test_replaying_an_accepted_job_is_refused(pipeline: Pipeline) -> None:
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    job = pipeline.job("item-1")
    try:
        replay(pipeline.runtime.engine, job.id, OPS)
    except Exception as exc:
        assert "accepted" in str(exc)
    else:
        raise AssertionError("replay of an accepted job was not refused")


def test_skip_needs_a_reason_and_is_audited(pipeline: Pipeline) -> None:
    records = registered_stock() + b.sale_with_stock(
        TIN, "00", "bad", [GHOST], trd_invc_no="T9", at=NOW
    )
    pipeline.enqueue(records)
    pipeline.drain()
    bad = pipeline.job("bad")
    for reason in ("", "   "):
        try:
            skip(pipeline.runtime.engine, bad.id, OPS, reason=reason)
        except Exception as exc:
            assert "reason" in str(exc)
        else:
            raise AssertionError("skip without a reason was accepted")
    skip(pipeline.runtime.engine, bad.id, OPS, reason="customer cancelled, credited on paper")
    assert pipeline.job("bad").state == "skipped"
    with pipeline.runtime.engine.connect() as conn:
        audit = oq.audit_entries(conn)
    assert audit[0].action == "skip" and audit[0].actor == "test-operator"
    assert audit[0].reason == "customer cancelled, credited on paper"


def test_lost_answer_is_resent_with_the_same_number_and_the_receipt_is_recovered(
    pipeline: Pipeline,
) -> None:
    # Given KRA records the first sale but its answer never arrives
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.sim.add_fault(endpoint="saveTrnsSalesOsdc", kind="lost_answer", times=1)
    pipeline.enqueue([b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])

    # When the branch drains
    pipeline.drain()

    # Then KRA signed it once, and our job holds KRA's signature for invcNo 1
    assert sales_of(pipeline) == [(1, "T1")]
    job = pipeline.job("s1")
    assert job.state == "accepted" and job.invc_no == 1
    receipt = json.loads(job.receipt)
    recorded = ledger_writes(pipeline.sim.ledger_path, ["saveTrnsSalesOsdc"])[0]["data"]
    assert receipt["rcptSign"] == recorded["rcptSign"]
    assert job.qr_url.endswith(f"{TIN}00{recorded['rcptSign']}")
    # ... and the resend repeated the first send byte for byte (same number, same body)
    with pipeline.runtime.engine.connect() as conn:
        sends = oq.job_attempts(conn, job.id)
    assert len(sends) == 2 and {a.outcome for a in sends} == {"unknown", "duplicate"}
    assert len({a.request_hash for a in sends}) == 1 and {a.kra_number for a in sends} == {1}


def test_without_invoice_lookup_a_recovered_duplicate_is_marked_receipt_missing(
    pipeline_factory,
) -> None:
    p = pipeline_factory(invoice_details=False)
    p.runtime.settings.oscu.invoice_details_supported = False
    p.enqueue(registered_stock())
    p.drain()
    p.sim.add_fault(endpoint="saveTrnsSalesOsdc", kind="lost_answer", times=1)
    p.enqueue([b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])
    p.drain()
    job = p.job("s1")
    assert job.state == "accepted" and job.receipt_missing and job.receipt is None
    assert sales_of(p) == [(1, "T1")]


def test_kra_ahead_of_our_counter_parks_the_branch_until_set_next(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # Given KRA already holds invcNo 1 for this branch (sent by another system)
    from simulator.samples import Line, sale_body
    from simulator.testing import SimClient

    pipeline.enqueue(registered_stock())
    pipeline.drain()
    device = pipeline.runtime.devices.get(TIN, "00")
    with SimClient(pipeline.sim.url) as client:
        answer = client.post(
            "saveTrnsSalesOsdc",
            {
                **sale_body(1, [Line(item_code(1), prc="116")], trd_invc_no="OTHER-SYSTEM"),
                "tin": TIN,
                "bhfId": "00",
            },
            **{"tin": TIN, "bhfId": "00", "cmcKey": device.credentials.cmc_key.get_secret_value()},
        )
    assert answer["resultCd"] == "000"

    # When our first sale goes out with invcNo 1
    pipeline.enqueue(
        [
            b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW),
            b.sale(TIN, "00", "s2", [WATER], trd_invc_no="T2", at=NOW),
        ]
    )
    report = pipeline.drain()

    # Then the branch is parked with a message saying what to do, and nothing was lost
    assert report.status == "parked"
    branch = pipeline.branch()
    assert "set-next P051234567A/00 --invc" in branch.parked_reason
    assert pipeline.job("s1").state == "pending" and pipeline.job("s1").invc_no is None
    # ... and the job's log line gives the same command, naming the branch
    logged = [getattr(r, "reason", None) for r in caplog.records if r.name == "etims_relay.jobs"]
    assert branch.parked_reason in logged

    # When the operator sets KRA's next number (KRA's receipt lookup confirms it: 1 taken,
    # 2 free), the branch resumes from there
    confirmed = kra_confirms_next_invoice(pipeline.runtime.client, device.credentials, 2)
    assert confirmed is True
    set_next(
        pipeline.runtime.engine, TIN, "00", OPS, invc_no=2, sar_no=None, reason="KRA ahead",
        kra_expects={"invcNo": 2},
    )  # fmt: skip
    pipeline.drain()
    assert sales_of(pipeline) == [(1, "OTHER-SYSTEM"), (2, "T1"), (3, "T2")]
    assert pipeline.branch().parked_reason is None


def test_a_counter_set_after_a_stalled_drain_read_the_head_is_the_number_the_sale_goes_with(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The head read and the start are separate short transactions on both databases: an
    # operator's set-next can land between them once the drain has outlived its lease (while
    # the lease holds, set-next is refused).
    from simulator.samples import Line, sale_body
    from simulator.testing import SimClient

    # Given KRA already holds invcNo 1 for this branch, and our counter still says 1
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    device = pipeline.runtime.devices.get(TIN, "00")
    with SimClient(pipeline.sim.url) as client:
        client.post(
            "saveTrnsSalesOsdc",
            {**sale_body(1, [Line(item_code(1), prc="116")], trd_invc_no="OTHER"), "tin": TIN,
             "bhfId": "00"},
            **{"tin": TIN, "bhfId": "00", "cmcKey": device.credentials.cmc_key.get_secret_value()},
        )  # fmt: skip
    pipeline.enqueue([b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])

    # When the drain stalls past its lease just after it read the head (with 1), and the
    # operator sets the counter to 2 meanwhile
    store_class = type(pipeline.runtime.drain_context().store)
    read_head = store_class.read_head
    seen: list[int] = []

    def read_head_then_set_next(store: Any, lease: Lease) -> BranchHead:
        head = read_head(store, lease)
        if not seen and head.jobs:
            seen.append(head.next_invc_no)
            with pipeline.runtime.engine.begin() as conn:
                conn.execute(text("UPDATE branches SET lease_until = 1"))
            set_next(
                pipeline.runtime.engine, TIN, "00", OPS, invc_no=2, sar_no=None, reason="x",
                force=True,
            )  # fmt: skip
        return head

    monkeypatch.setattr(store_class, "read_head", read_head_then_set_next)
    report = pipeline.drain()

    # Then the sale was built again and went out under 2; nothing went out under the stale 1
    assert seen == [1]
    assert report.status != "parked"
    assert sales_of(pipeline) == [(1, "OTHER"), (2, "T1")]
    assert pipeline.job("s1").state == "accepted" and pipeline.job("s1").invc_no == 2


def taken_over(p: Pipeline) -> tuple[Lease, Lease]:
    """A lease another worker has since taken over (and the new holder's)."""
    store = p.runtime.drain_context().store
    branch_id = p.branch().id
    old = store.claim(branch_id, "old-worker", 0.0, 1.0)  # expired at once
    new = store.claim(branch_id, "new-worker", 10.0**10, 60.0)
    assert old is not None and new is not None and new.token > old.token
    return old, new


def stale_writes(p: Pipeline, old: Lease, new: Lease) -> list[Callable[[BranchStore], object]]:
    """Every write a drain makes for the head job (the opening stock movement), as the
    holder of ``old`` would make it: its start with a number, each result, blocking it."""
    store = p.runtime.drain_context().store
    head = store.read_head(new).jobs[0]
    attempt = AttemptRow(1, 1, 0.0, 0.1, "accepted", "000", "ok", 200, None, "h", "old")
    stock = ((item_code(1), Decimal("50")),)
    records = [
        JobRecord(head, 0.0, writes.Accept("000", "ok", stock=stock), attempt, "{}"),
        JobRecord(head, 0.0, writes.Accept("000", "ok", stock=stock), None, "{}"),
        JobRecord(head, 0.0, writes.Retry(JobState.UNKNOWN, 1.0, True, None, "x"), attempt),
        JobRecord(head, 0.0, writes.Kill("910", "x", "release", Number("sarNo", 1)), attempt, "{}"),
        JobRecord(head, 0.0, writes.Park("x", "keep", expected=Number("sarNo", 7)), attempt),
    ]
    start = Start(head.id, 1, False, "{}", Number("sarNo", 1), 10.0**11, head.state, None, None)
    calls: list[Callable[[BranchStore], object]] = [
        lambda s: s.start(old, start, 0.0),
        lambda s: s.block(old, head, head.id, 0.0),
    ]
    calls += [lambda s, r=r: s.record(old, r) for r in records]  # type: ignore[misc]
    return calls


def test_a_drain_that_lost_its_lease_writes_nothing(pipeline: Pipeline) -> None:
    # Given a worker whose lease was taken over, with the opening stock movement at the head
    # and a sale behind it; on PostgreSQL its per-job writes run as single statements in
    # autocommit, with no transaction around them
    item, opening = registered_stock()
    pipeline.enqueue([item])
    pipeline.drain()
    pipeline.enqueue([opening, b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])
    old, new = taken_over(pipeline)
    before = pipeline.branch()
    store = pipeline.runtime.drain_context().store

    # When it writes what a drain writes for its head job, each is refused
    for write in stale_writes(pipeline, old, new):
        with pytest.raises(LeaseLost):
            write(store)

    # Then none of it landed: job state, attempt row, result event, stock, counters, lease,
    # the park
    job_id = pipeline.job("opening").id
    assert (pipeline.job("opening").state, pipeline.job("opening").body) == ("pending", None)
    assert pipeline.job("s1").state == "pending"
    after = pipeline.branch()
    assert (after.next_sar_no, after.next_invc_no, after.lease_until, after.parked_reason) == (
        before.next_sar_no, before.next_invc_no, before.lease_until, None,
    )  # fmt: skip
    engine = pipeline.runtime.engine
    with engine.connect() as conn:
        assert oq.job_attempts(conn, job_id) == []
        assert (
            conn.execute(select(result_events).where(result_events.c.job_id == job_id)).all() == []
        )
        assert conn.execute(select(stock_balances)).all() == []


def test_jobs_waiting_on_the_one_before_go_in_the_same_drain_each_sent_once(
    pipeline: Pipeline,
) -> None:
    # Given an item, its opening stock, and a sale with its stock-out and stock master: each
    # job depends on the one before it
    records = registered_stock() + b.sale_with_stock(
        TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW
    )
    pipeline.enqueue(records)
    # When the branch drains once
    with pipeline.runtime.engine.connect() as conn:
        branch_id = int(q.get_branch(conn, TIN, "00").id)
    report = drain(branch_id, pipeline.runtime.drain_context())
    # Then every job went in that one drain, none waiting for a dependency it had just seen
    # accepted, and each went to KRA exactly once
    assert (report.status, report.sent) == ("idle", len(records))
    jobs = {r["idempotency_key"]: pipeline.job(r["idempotency_key"]) for r in records}
    assert {key: job.state for key, job in jobs.items()} == dict.fromkeys(jobs, "accepted")
    with pipeline.runtime.engine.connect() as conn:
        calls = {key: len(oq.job_attempts(conn, job.id)) for key, job in jobs.items()}
    assert calls == dict.fromkeys(jobs, 1)


def after_kra_answers(
    p: Pipeline, trd_invc_no: str, action: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run ``action`` once KRA has answered the sale ``trd_invc_no``, before the drain
    records the answer: while the job after it is already built, waiting to be marked."""
    client = p.runtime.client
    real_call = client.call
    done: list[bool] = []

    def call(endpoint: str, body: dict[str, Any], **kwargs: Any) -> Any:
        outcome = real_call(endpoint, body, **kwargs)
        if not done and body.get("trdInvcNo") == trd_invc_no:
            done.append(True)
            action()
        return outcome

    monkeypatch.setattr(client, "call", call)


def sales_at(p: Pipeline, bhf_id: str) -> list[tuple[int, str]]:
    return [
        (w["body"]["invcNo"], w["body"]["trdInvcNo"])
        for w in ledger_writes(p.sim.ledger_path, ["saveTrnsSalesOsdc"])
        if w["body"]["bhfId"] == bhf_id
    ]


def test_a_job_unblocked_while_the_one_before_is_out_is_not_overtaken(
    pipeline_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The next job's start is planned from the head read before the one before it went out,
    # and written with that one's acceptance. Given a sale M in branch 00 blocked by a dead
    # sale X of branch 01, then sales N0, N1, N2
    p = pipeline_factory(branches=("00", "01"))
    ghost_at_01 = b.item(TIN, "01", "item-9@01", item_cd=item_code(9), item_nm="Ghost",
                         price=GHOST.prc)  # fmt: skip
    p.enqueue([b.sale(TIN, "01", "x", [GHOST], trd_invc_no="X", at=NOW)])
    p.drain("01")
    assert p.job("x").state == "dead"
    p.enqueue([ghost_at_01])
    p.drain("01")
    p.enqueue(
        registered_stock("00")
        + [b.sale(TIN, "00", "m", [WATER], trd_invc_no="M", at=NOW, depends_on=["x"])]
        + [b.sale(TIN, "00", n, [WATER], trd_invc_no=n, at=NOW) for n in ("N0", "N1", "N2")]
    )

    # When X is replayed and accepted (unblocking M) just as KRA answers N1
    def replay_x() -> None:
        replay(p.runtime.engine, p.job("x").id, OPS, reason="item registered")
        p.drain("01")
        assert p.job("m").state == "pending"

    after_kra_answers(p, "N1", replay_x, monkeypatch)
    p.drain("00")

    # Then M, no longer blocked, went before N2: N2 was not sent ahead of a pending sale
    assert p.job("x").state == "accepted"
    assert sales_at(p, "00") == [(1, "N0"), (2, "N1"), (3, "M"), (4, "N2")]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_counter_set_while_a_sale_is_out_waits_for_the_park_and_the_next_one_goes_with_it(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simulator.samples import Line, sale_body
    from simulator.testing import SimClient

    # Given sales N1 and N2
    pipeline.enqueue(
        registered_stock()
        + [b.sale(TIN, "00", n, [WATER], trd_invc_no=n, at=NOW) for n in ("N1", "N2")]
    )
    refused: list[str] = []

    # When, as KRA answers N1, another system records invcNo 2 and the operator tries to set
    # the branch's counter to 3 (N2 was already built with 2)
    def other_system_takes_2() -> None:
        device = pipeline.runtime.devices.get(TIN, "00")
        with SimClient(pipeline.sim.url) as client:
            client.post(
                "saveTrnsSalesOsdc",
                {**sale_body(2, [Line(item_code(1), prc="116")], trd_invc_no="OTHER"),
                 "tin": TIN, "bhfId": "00"},
                **{"tin": TIN, "bhfId": "00",
                   "cmcKey": device.credentials.cmc_key.get_secret_value()},
            )  # fmt: skip
        with pytest.raises(OperatorError, match="is being drained") as error:
            set_next(
                pipeline.runtime.engine, TIN, "00", OPS, invc_no=3, sar_no=None, reason="x",
                kra_expects={"invcNo": 3},
            )  # fmt: skip
        refused.append(str(error.value))

    after_kra_answers(pipeline, "N1", other_system_takes_2, monkeypatch)
    pipeline.drain()
    monkeypatch.undo()

    # Then the set-next was refused while the drain held the branch: N1 keeps the number KRA
    # accepted it under; N2 went under 2, which KRA refused, and the branch parked
    assert refused
    n1 = pipeline.job("N1")
    assert (n1.state, n1.invc_no) == ("accepted", 1)
    assert pipeline.branch().parked_reason is not None

    # ... and once parked, the operator's set-next is taken: N2 goes under 3, nothing twice
    set_next(
        pipeline.runtime.engine, TIN, "00", OPS, invc_no=3, sar_no=None, reason="x",
        kra_expects={"invcNo": 3},
    )  # fmt: skip
    report = pipeline.drain()
    assert report.status == "idle", report
    assert sales_of(pipeline) == [(1, "N1"), (2, "OTHER"), (3, "N2")]
    assert pipeline.job("N2").invc_no == 3


def test_a_stock_master_reports_the_fractional_balance_exactly(pipeline: Pipeline) -> None:
    # Given 10.25 units in stock, then a sale of 0.1 with its stock-out and stock master
    water = item_code(1)
    opening = b.SaleLine(water, "Water", Decimal("10.25"), Decimal("116"))
    sold = b.SaleLine(water, "Water", Decimal("0.1"), Decimal("116"))
    pipeline.enqueue(
        [
            b.item(TIN, "00", "item-1", item_cd=water, item_nm="Water", price=Decimal("116")),
            b.stock_io(
                TIN, "00", "opening", [opening], sar_ty_cd="06", at=NOW, depends_on=["item-1"]
            ),
            *b.sale_with_stock(TIN, "00", "s1", [sold], trd_invc_no="T1", at=NOW),
        ]
    )
    # When the branch drains
    pipeline.drain()
    # Then KRA accepted the stock master with the remaining 10.15, not a float's expansion
    master = pipeline.job(f"s1:stock-master:{water}")
    assert master.state == "accepted", master.result_message
    assert json.loads(master.body, parse_float=Decimal)["rsdQty"] == Decimal("10.15")


def test_every_call_leaves_an_attempt_and_every_outcome_one_result_event(
    pipeline: Pipeline,
) -> None:
    # Given a sale answered 503 once, then accepted, and a sale KRA rejects (910)
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.sim.add_fault(endpoint="saveTrnsSalesOsdc", kind="http_error", status=503, times=1)
    pipeline.enqueue(
        [
            b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW),
            b.sale(TIN, "00", "bad", [GHOST], trd_invc_no="T2", at=NOW),
        ]
    )

    # When the branch drains
    pipeline.drain()

    # Then each call is on record, and consumers got one event per final outcome
    s1, dead = pipeline.job("s1").id, pipeline.job("bad").id
    with pipeline.runtime.engine.connect() as conn:
        good = [(a.number, a.outcome) for a in oq.job_attempts(conn, s1)]
        bad = [(a.number, a.result_code) for a in oq.job_attempts(conn, dead)]
        events = conn.execute(select(result_events.c.job_id, result_events.c.state)).all()
    assert good == [(1, "transient"), (2, "accepted")]
    assert bad == [(1, "910")]
    by_job = {job_id: state for job_id, state in events}
    assert len(events) == len(by_job) == 4  # item, opening stock, s1, bad
    assert by_job[s1] == "accepted"
    assert by_job[dead] == "dead"


def test_sales_of_a_branch_wait_for_a_retry_instead_of_overtaking(pipeline: Pipeline) -> None:
    # Given KRA answers the first sale with 990 (rate limit) twice
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.sim.add_fault(endpoint="saveTrnsSalesOsdc", kind="result_code", code="990", times=2)
    pipeline.enqueue(
        [b.sale(TIN, "00", f"s{i}", [WATER], trd_invc_no=f"T{i}", at=NOW) for i in range(1, 4)]
    )
    pipeline.drain()
    # Then the later sales waited: KRA got them in order, numbered without gaps
    assert sales_of(pipeline) == [(1, "T1"), (2, "T2"), (3, "T3")]
    assert pipeline.job("s1").attempts == 3


def test_a_branch_without_a_device_waits_parked_until_device_init(pipeline_factory) -> None:
    # Given jobs for a branch whose device was never initialised
    p = pipeline_factory(branches=())
    p.enqueue(registered_stock())

    # When it drains, the branch parks with the command that fixes it; nothing is lost
    assert p.drain().status == "parked"
    assert "etims-relay device init" in p.branch().parked_reason
    assert p.job("item-1").state == "pending"

    # Then registering the device resumes the branch
    init_device(
        p.runtime.engine, p.runtime.client, p.runtime.devices, tin=TIN, bhf_id="00", serial="SER-00"
    )
    assert p.branch().parked_reason is None
    p.drain()
    assert set(p.states().values()) == {"accepted"}


def test_giving_up_after_a_5xx_keeps_the_number_and_parks_while_kra_cannot_be_asked(
    pipeline: Pipeline,
) -> None:
    """A 503 may have reached KRA: when retries run out and KRA cannot say what it holds under
    the number, the number must not go to another sale (invariant 2); the branch parks."""
    # The last allowed attempt is the first that may have reached KRA (before it, e.g., the
    # connection was refused): max_attempts=1 makes the first attempt that last one.
    pipeline.runtime.settings.retry.give_up_after_s = 0
    pipeline.runtime.settings.retry.max_attempts = 1
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.sim.add_fault(endpoint="saveTrnsSalesOsdc", kind="http_error", status=503)
    pipeline.sim.add_fault(endpoint="selectInvoiceDetails", kind="http_error", status=503)
    pipeline.enqueue([b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])

    report = pipeline.drain()

    job = pipeline.job("s1")
    assert report.status == "parked", report
    assert job.state == "pending" and job.invc_no == 1 and job.body is not None
    assert pipeline.branch().next_invc_no == 2
    assert "invcNo 1 may have reached KRA" in pipeline.branch().parked_reason


def test_giving_up_after_a_5xx_releases_the_number_once_kra_says_it_holds_nothing(
    pipeline: Pipeline,
) -> None:
    pipeline.runtime.settings.retry.give_up_after_s = 0
    pipeline.runtime.settings.retry.max_attempts = 1
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.sim.add_fault(endpoint="saveTrnsSalesOsdc", kind="http_error", status=503, times=1)
    pipeline.enqueue(
        [
            b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW),
            b.sale(TIN, "00", "s2", [WATER], trd_invc_no="T2", at=NOW),
        ]
    )

    pipeline.drain()

    # KRA's lookup of invcNo 1 answered 001: the job is dead, its number went to the next sale
    job = pipeline.job("s1")
    assert job.state == "dead" and job.invc_no is None
    assert sales_of(pipeline) == [(1, "T2")]


def test_a_drain_that_loses_its_lease_still_reports_what_it_sent_and_whom_it_unblocked(
    pipeline_factory: Any,
) -> None:
    # Given a sale in branch 01 waiting for branch 00's opening stock, and a sale in branch
    # 00 behind that stock, while branch 01 already drained as far as it could
    p = pipeline_factory(branches=("00", "01"))
    p.enqueue(registered_stock("00"))
    p.enqueue([b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])
    p.enqueue(
        [
            b.item(TIN, "01", "item-1@01", item_cd=item_code(1), item_nm="Water", price=WATER.prc),
            b.sale(TIN, "01", "s1@01", [WATER], trd_invc_no="T1", at=NOW,
                   depends_on=["item-1@01", "opening"]),
        ]
    )  # fmt: skip
    assert p.drain("01").status == "waiting"

    # When another worker takes branch 00 over while KRA answers the drain's sale
    ctx = p.runtime.drain_context()
    store, branch_id = ctx.store, p.branch("00").id
    real_call = ctx.client.call

    def call_taken_over(endpoint: str, body: Any, **kw: Any) -> Any:
        if endpoint == "saveTrnsSalesOsdc":
            with p.runtime.engine.begin() as conn:
                conn.execute(text("UPDATE branches SET lease_until = 1 WHERE id = :id"),
                             {"id": branch_id})  # fmt: skip
            assert store.claim(branch_id, "other-worker", ctx.clock(), 60.0) is not None
        return real_call(endpoint, body, **kw)

    ctx.client = SimpleNamespace(call=call_taken_over)  # type: ignore[assignment]
    report = drain(branch_id, ctx)

    # Then it reports the lease lost with the two jobs it delivered before, and branch 01,
    # whose sale the opening stock unblocked, to wake
    assert report.status == "lease_lost"
    assert report.sent == 2
    assert report.woken == frozenset({p.branch("01").id})
    assert p.states()["s1"] == "in_flight"  # the new holder resends it as maybe-sent


def lease_seen_by_each_call(p: Pipeline, claim_takes_s: float) -> list[float]:
    """Drain two sales with a lease of 10 s that must keep 4 round trips of 2 s each (so it
    is due again 2 s after it was last pushed out), on a clock starting at 1,000,000 where
    the claim takes ``claim_takes_s`` and each call 3 s. The lease's end at each call."""
    p.enqueue(registered_stock())
    p.drain()
    p.enqueue([b.sale(TIN, "00", f"s{i}", [WATER], trd_invc_no=f"T{i}", at=NOW) for i in (1, 2)])
    ctx = p.runtime.drain_context()
    ctx.settings = ctx.settings.model_copy(
        update={"drain": ctx.settings.drain.model_copy(update={"lease_ttl_s": 10.0})}
    )
    clock = [1_000_000.0]
    ctx.clock = lambda: clock[0]
    real_call, real_claim, leases = ctx.client.call, ctx.store.claim, []

    def claim_taking_time(*args: Any) -> Any:  # e.g. a wait for a pooled connection
        clock[0] += claim_takes_s
        return real_claim(*args)

    def call_then_pass_time(endpoint: str, body: Any, **kw: Any) -> Any:
        leases.append(p.branch().lease_until)
        clock[0] += 3.0
        return real_call(endpoint, body, **kw)

    ctx.client = SimpleNamespace(call=call_then_pass_time)  # type: ignore[assignment]
    ctx.store = copy.copy(ctx.store)  # the runtime's own store stays as it is
    ctx.store.claim = claim_taking_time  # type: ignore[method-assign]
    assert drain(p.branch().id, ctx).sent == 2
    return leases


def test_a_start_pushes_the_lease_out_when_it_is_due(pipeline: Pipeline) -> None:
    # Given a lease taken at t=0 until t=10; when two sales go, 3 s each at KRA
    leases = lease_seen_by_each_call(pipeline, claim_takes_s=0.0)

    # Then the second sale's start, at t=3, pushed the lease out to t=13
    assert leases == [1_000_010.0, 1_000_013.0]


def test_a_lease_counts_from_its_claim_however_long_the_claim_waited(
    pipeline: Pipeline,
) -> None:
    # Given a lease asked for at t=0 (until t=10) whose claim took 3 s
    leases = lease_seen_by_each_call(pipeline, claim_takes_s=3.0)

    # Then the first sale's start, at t=3, already had to push it out (to t=13): 3 s of
    # the lease were gone, more than the 2 s of slack it has
    assert leases == [1_000_013.0, 1_000_016.0]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_both_stores_see_the_same_next_head_after_an_acceptance(pipeline: Pipeline) -> None:
    # Given, on PostgreSQL, an item, its opening stock (depending on it) and a sale; the
    # PostgreSQL store accepts in one statement that reads the next head from its snapshot,
    # the plain store in a transaction that reads it after its writes
    item, opening = registered_stock()
    pipeline.enqueue([item, opening, b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])
    engine, branch_id = pipeline.runtime.engine, pipeline.branch().id
    single, plain = PostgresBranchStore(engine), SqlBranchStore(engine)
    lease = single.claim(branch_id, "test", 0.0, 10.0**11)
    assert lease is not None

    def accept_head(store: BranchStore, now: float) -> BranchHead | None:
        job = store.read_head(lease).jobs[0]
        number = None if job.kind.numbered_by is None else Number(job.kind.numbered_by, 1)
        store.start(lease, Start(job.id, 1, False, "{}", number, None, job.state, None, None), now)
        attempt = AttemptRow(1, None, now, 0.1, "accepted", "000", "ok", 200, None, "h", "t")
        accept = writes.Accept("000", "ok", stock=((item_code(1), Decimal("50")),))
        return store.record(lease, JobRecord(job, now, accept, attempt, "{}")).head

    # When the item is accepted by the one and the opening stock by the other
    after_item = accept_head(single, 1.0)
    assert after_item is not None
    seen_by_plain = plain.read_head(lease)
    after_opening = accept_head(plain, 2.0)
    assert after_opening is not None
    seen_by_single = single.read_head(lease)

    # Then each store's head read along with the acceptance is what the other reads after
    # it: the opening stock with its dependency on the item accepted, then the sale
    assert after_item == seen_by_plain
    assert [j.idempotency_key for j in after_item.jobs] == ["opening", "s1"]
    assert [d.state for d in after_item.jobs[0].dependencies] == [JobState.ACCEPTED]
    assert after_opening == seen_by_single
    assert [j.idempotency_key for j in after_opening.jobs] == ["s1"]
    assert after_opening.next_sar_no == 2


def test_a_supersede_returns_the_head_a_fresh_read_shows_after_it(pipeline: Pipeline) -> None:
    # Given two stock masters of one item whose balance the relay computes, then a sale: the
    # first is moot once the second is enqueued
    pipeline.enqueue(registered_stock())
    pipeline.drain()
    pipeline.enqueue(
        [
            b.stock_master(TIN, "00", "sm1", item_cd=item_code(1)),
            b.stock_master(TIN, "00", "sm2", item_cd=item_code(1)),
            b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW),
        ]
    )
    store = pipeline.runtime.drain_context().store
    lease = store.claim(pipeline.branch().id, "test", 0.0, 10.0**11)
    assert lease is not None
    first = store.read_head(lease).jobs[0]
    assert first.idempotency_key == "sm1"

    # When it is superseded by the second (the head read in the supersede's transaction)
    after = store.supersede(lease, first, pipeline.job("sm2").id, 1.0)

    # Then that head is what a read of its own shows: the second stock master, then the sale
    assert after == store.read_head(lease)
    assert [j.idempotency_key for j in after.jobs] == ["sm2", "s1"]
    assert pipeline.job("sm1").state == "superseded"


def test_a_job_waiting_on_another_branch_goes_as_soon_as_that_branch_delivers(
    pipeline_factory: Any,
) -> None:
    # Given a sale in branch 01 that waits for the opening stock of branch 00 (a transfer)
    p = pipeline_factory(branches=("00", "01"))
    p.enqueue(registered_stock("00"))
    p.enqueue(
        [
            b.item(TIN, "01", "item-1@01", item_cd=item_code(1), item_nm="Water", price=WATER.prc),
            b.sale(TIN, "01", "s1@01", [WATER], trd_invc_no="T1", at=NOW,
                   depends_on=["item-1@01", "opening"]),
        ]
    )  # fmt: skip

    # When branch 01 drains first, its sale waits (the item goes, the sale cannot yet)
    first = p.drain("01")
    assert first.status == "waiting"
    assert p.states()["s1@01"] == "pending"

    # ... and branch 00's drain, delivering the opening stock, names branch 01 to wake
    delivered = p.drain("00")
    assert p.branch("01").id in delivered.woken
    assert p.branch("01").wake_after is not None

    # Then branch 01's next drain sends the sale at once
    p.drain("01")
    assert p.states()["s1@01"] == "accepted"


def test_the_head_of_a_branch_is_read_from_the_active_jobs_index(engine: Any) -> None:
    # The head lookup must not walk a branch's accepted history (10^6 jobs after a year):
    # both planners can use the partial index of active jobs for the drain's head query.
    from sqlalchemy import text

    from worker.outbox.named_sql import load

    head = load("drain.sql")["read_head"]
    with engine.begin() as conn:
        explain = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
        if conn.dialect.name == "postgresql":  # an empty table: make it show what it can use
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        params = {"branch_id": 1}
        plan = " ".join(str(row) for row in conn.execute(text(explain + head.text), params))
    assert "ix_jobs_branch_active_seq" in plan


def test_a_body_that_cannot_be_built_is_dead_and_the_job_before_it_stays_accepted(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sale whose body cannot be built at send time (here: completion fails with an
    # unexpected error), between two good sales
    import worker.drain

    real = worker.drain.complete_body

    def failing(kind: Any, payload: Any, **kw: Any) -> Any:
        if payload.get("trdInvcNo") == "T2":
            raise RuntimeError("cannot complete this one")
        return real(kind, payload, **kw)

    pipeline.enqueue(registered_stock())
    pipeline.drain()
    monkeypatch.setattr(worker.drain, "complete_body", failing)
    pipeline.enqueue(
        [b.sale(TIN, "00", f"s{i}", [WATER], trd_invc_no=f"T{i}", at=NOW) for i in (1, 2, 3)]
    )

    # When the branch drains (s2 is prepared in the same transaction that records s1)
    pipeline.drain()

    # Then s1 stays accepted, s2 is dead with the reason, and s3 took s2's number
    states = pipeline.states()
    assert (states["s1"], states["s2"], states["s3"]) == ("accepted", "dead", "accepted")
    assert "RuntimeError: cannot complete this one" in pipeline.job("s2").result_message
    assert sales_of(pipeline) == [(1, "T1"), (2, "T3")]
