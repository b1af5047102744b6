"""Stock-outs merged under a backlog (``ETIMS_COALESCE__STOCK_IO``): a branch sends fewer,
larger stock movements, KRA still sees every stock-out after the sales it releases, and the
merged send is one job for unknown outcomes, crashes, dead letters and replay; on SQLite and
PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from producers import builders as b
from simulator.verify import verify_ledger
from tests.helpers import RelayEnv, WorkerPool, all_terminal, ledger_writes, wait_until
from tests.integration.pipeline_fixtures import Pipeline
from tests.integration.producers.intake_fixtures import start_intake
from tests.integration.test_coalesce_stock_masters import (
    ITEMS,
    assert_kra_agrees_with_the_outbox,
    backlog,
    writes,
)
from tests.integration.test_pipeline_workers import init_devices
from tests.workload import TIN, item_code
from worker import metrics
from worker.drain import drain
from worker.metrics import DbCollector
from worker.oscu.outcome import CallOutcome, OutcomeKind
from worker.outbox import ops_queries as oq
from worker.outbox.db import make_engine
from worker.outbox.models import jobs, result_events
from worker.replay import Actor, OperatorError, replay, replay_branch, set_next, skip, unpark

SALES = 12
OPS = Actor("ops")
NOW = datetime.now(UTC)


def merging(p: Pipeline, **bounds: Any) -> Pipeline:
    p.runtime.settings.coalesce.stock_io = True
    for name, value in bounds.items():
        setattr(p.runtime.settings.coalesce, name, value)
    return p


def opening_at_kra(p: Pipeline) -> list[dict[str, Any]]:
    """A backlog whose items and opening stock are at KRA already, the sales still to come."""
    records = backlog()
    p.enqueue(records[: ITEMS + 1])
    p.drain()
    return records[ITEMS + 1 :]


def stock_outs(p: Pipeline) -> list[Any]:
    with p.runtime.engine.connect() as conn:
        rows = conn.execute(
            select(jobs).where(jobs.c.kind == "stock_io", jobs.c.sar_ty_cd == "11")
        ).all()
    return sorted(rows, key=lambda r: r.seq)


def kra_order(p: Pipeline) -> list[str]:
    """What KRA received, in order: ``S<trdInvcNo>`` for a sale, ``IO<sarNo>`` for a stock
    movement, ``M<itemCd>`` for a stock master."""
    seen = []
    for w in ledger_writes(p.sim.ledger_path):
        body = w["body"]
        if w["endpoint"] == "saveTrnsSalesOsdc":
            seen.append(f"S{body['trdInvcNo']}")
        elif w["endpoint"] == "insertStockIO":
            seen.append(f"IO{body['sarNo']}")
        elif w["endpoint"] == "saveStockMaster":
            seen.append(f"M{body['itemCd']}")
    return seen


def seq_order(p: Pipeline) -> list[str]:
    """The same for the outbox's accepted jobs in enqueue order: what KRA sees when nothing
    is reordered."""
    with p.runtime.engine.connect() as conn:
        rows = conn.execute(select(jobs).order_by(jobs.c.seq)).all()
    seen = []
    for row in rows:
        if row.state != "accepted":
            continue
        payload = json.loads(row.payload)
        if row.kind == "sale":
            seen.append(f"S{payload['trdInvcNo']}")
        elif row.kind == "stock_io":
            seen.append(f"IO{row.sar_no}")
        elif row.kind == "stock_master":
            seen.append(f"M{payload['itemCd']}")
    return seen


def sold_per_sale(records: list[dict[str, Any]]) -> dict[str, Decimal]:
    """Quantity each sale's stock-out takes out, by the stock-out's key."""
    return {
        r["idempotency_key"]: sum(Decimal(str(line["qty"])) for line in r["payload"]["itemList"])
        for r in records
        if r["kind"] == "stock_io" and r["payload"]["sarTyCd"] == "11"
    }


def test_a_backlog_sends_its_stock_outs_merged_after_the_sales_they_release(
    pipeline: Pipeline,
) -> None:
    # Given a branch whose whole backlog is enqueued (KRA was away), with merging on
    merging(pipeline)
    records = backlog()
    pipeline.enqueue(records)

    # When it drains
    pipeline.drain()

    # Then every sale went, in order, and the 12 stock-outs went as ONE insertStockIO, after
    # all 12 sales (verify fails a stock-out that releases more than the sales before it sold)
    sales = writes(pipeline, "saveTrnsSalesOsdc")
    assert [w["body"]["invcNo"] for w in sales] == list(range(1, SALES + 1))
    movements = writes(pipeline, "insertStockIO")
    assert [m["body"]["sarTyCd"] for m in movements] == ["06", "11"]
    merged = movements[1]["body"]
    assert len(merged["itemList"]) == ITEMS  # one line per item: its lines summed
    assert sum(Decimal(str(line["qty"])) for line in merged["itemList"]) == sum(
        sold_per_sale(records).values()
    )
    order = kra_order(pipeline)
    assert order.index(f"IO{merged['sarNo']}") > max(order.index(f"S00-T{n}") for n in (1, 12))
    # ... each stock-out ended accepted under that one sarNo, naming the send that carried it
    outs = stock_outs(pipeline)
    carrier = outs[0]
    assert {(o.state, o.sar_no) for o in outs} == {("accepted", merged["sarNo"])}
    assert carrier.merged_into is None
    assert all(o.merged_into == carrier.id for o in outs[1:])
    # ... and KRA's balances, as movements and as each item's last stock master, are the
    # outbox's: 2 movements instead of 13, and each item's first and last stock master
    assert len(writes(pipeline, "saveStockMaster")) == 2 * ITEMS
    assert_kra_agrees_with_the_outbox(pipeline)
    # ... so the backlog took 19 writes for its 41 jobs
    assert len(ledger_writes(pipeline.sim.ledger_path)) - 1 == ITEMS + 1 + SALES + 1 + 2 * ITEMS


def test_with_merging_off_the_branch_sends_in_enqueue_order(pipeline: Pipeline) -> None:
    # Given the same backlog, with merging off (the default)
    assert pipeline.runtime.settings.coalesce.stock_io is False
    pipeline.enqueue(backlog())

    pipeline.drain()

    # Then KRA received every job in enqueue order, a stock-out right after its sale
    assert kra_order(pipeline) == seq_order(pipeline)
    assert len(writes(pipeline, "insertStockIO")) == 1 + SALES
    assert all(o.merged_into is None for o in stock_outs(pipeline))
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_branch_without_backlog_sends_as_before_with_merging_on(pipeline: Pipeline) -> None:
    # Given sales that arrive one at a time, each drained before the next arrives
    merging(pipeline)
    records = backlog(6)
    pipeline.enqueue(records[:3])
    pipeline.drain()
    for start in range(3, len(records), 3):
        pipeline.enqueue(records[start : start + 3])
        pipeline.drain()

    # Then nothing waited and nothing was merged: KRA saw the enqueue order
    assert kra_order(pipeline) == seq_order(pipeline)
    assert len(writes(pipeline, "insertStockIO")) == 1 + 6
    assert_kra_agrees_with_the_outbox(pipeline)


def test_at_most_max_defer_jobs_stock_outs_wait_behind_later_sales(pipeline: Pipeline) -> None:
    # Given at most 3 stock-outs may wait behind later sales
    merging(pipeline, max_defer_jobs=3)
    records = backlog()
    pipeline.enqueue(records)

    pipeline.drain()

    # Then past 3 waiting the oldest went, carrying the ready ones: 4 sales per movement
    order = kra_order(pipeline)
    movements = writes(pipeline, "insertStockIO")[1:]
    assert len(movements) == SALES // 4
    waiting = 0
    for entry in order:
        if entry.startswith("S"):
            waiting += 1
            assert waiting <= 4, order
        elif entry.startswith("IO") and entry != "IO1":
            waiting = 0
    assert [o.state for o in stock_outs(pipeline)] == ["accepted"] * SALES
    assert_kra_agrees_with_the_outbox(pipeline)


def test_no_sale_passes_a_stock_in_and_no_stock_out_is_merged_past_one(
    pipeline: Pipeline,
) -> None:
    # Given a backlog with a restock of item 1 (a stock-in) enqueued after sale 6's jobs
    merging(pipeline)
    records = backlog()
    after_six = next(i for i, r in enumerate(records) if r["idempotency_key"] == "00:sale:7")
    restock = b.stock_io(
        TIN, "00", "restock", [b.SaleLine(item_code(1), "Item", Decimal(9), Decimal("116"))],
        sar_ty_cd="06", at=NOW,
    )  # fmt: skip
    records.insert(after_six, restock)
    pipeline.enqueue(records)

    pipeline.drain()

    # Then the stock-in kept its place: sales 1-6 and their merged stock-out before it,
    # sale 7 and everything after it behind it
    order = kra_order(pipeline)
    restock_at = order.index(f"IO{pipeline.job('restock').sar_no}")
    merged_1_6 = order.index(f"IO{pipeline.job('00:sale:1:stock-out').sar_no}")
    assert order.index("S00-T6") < merged_1_6 < restock_at < order.index("S00-T7")
    outs = stock_outs(pipeline)
    assert {o.sar_no for o in outs[:6]} == {pipeline.job("00:sale:1:stock-out").sar_no}
    assert all(o.sar_no > pipeline.job("restock").sar_no for o in outs[6:])
    assert_kra_agrees_with_the_outbox(pipeline)


def test_skipping_a_merged_send_that_never_reached_kra_lets_its_stock_outs_go(
    pipeline: Pipeline,
) -> None:
    # Given the merged send was refused (910: KRA recorded nothing, its sarNo was released)
    merging(pipeline)
    sales = opening_at_kra(pipeline)
    pipeline.sim.add_fault(endpoint="insertStockIO", kind="result_code", code="910", times=1)
    pipeline.enqueue(sales)
    pipeline.drain()
    outs = stock_outs(pipeline)
    assert {o.state for o in outs} == {"dead"}

    # When the operator skips the carrier
    done = skip(pipeline.runtime.engine, outs[0].id, OPS, reason="counted on paper")

    # Then only the carrier is given up: the stock-outs it was to carry wait in their places
    # again (the skip names them), go in their turn, and their stock masters follow
    assert done.members_pending == tuple(o.id for o in outs[1:])
    assert str(outs[1].id) in done.describe()
    pipeline.drain()
    outs = stock_outs(pipeline)
    assert outs[0].state == "skipped"
    assert {o.state for o in outs[1:]} == {"accepted"}
    assert all(o.merged_into in (None, outs[1].id) for o in outs[1:])
    with pipeline.runtime.engine.connect() as conn:
        audit = oq.audit_entries(conn, action="skip", limit=1)[0]
    assert json.loads(audit.details)["members_pending"] == [o.id for o in outs[1:]]


def test_skipping_a_merged_send_that_may_be_at_kra_skips_the_stock_outs_it_carried(
    pipeline: Pipeline,
) -> None:
    # Given the merged send's answer was lost (KRA may hold it) and its resend is due later
    merging(pipeline)
    sales = opening_at_kra(pipeline)
    pipeline.runtime.settings.retry.base_s = 30
    pipeline.runtime.settings.retry.cap_s = 30
    pipeline.sim.add_fault(endpoint="insertStockIO", kind="lost_answer", times=1)
    pipeline.enqueue(sales)
    pipeline.drain()
    outs = stock_outs(pipeline)
    assert outs[0].state == "unknown"

    # When the operator skips the carrier
    done = skip(pipeline.runtime.engine, outs[0].id, OPS, reason="counted on paper")

    # Then the stock-outs inside its send are skipped with it, and the skip names them
    outs = stock_outs(pipeline)
    assert {o.state for o in outs} == {"skipped"}
    assert f"job {outs[0].id}" in outs[3].skip_reason
    assert done.members_skipped == tuple(o.id for o in outs[1:])
    assert str(outs[3].id) in done.describe()
    masters = {s for k, s in pipeline.states().items() if ":stock-master:" in k}
    assert masters <= {"blocked", "superseded", "pending"}


def test_a_stock_out_ready_longer_than_max_defer_s_goes_before_later_sales(
    pipeline: Pipeline,
) -> None:
    # Given a backlog whose first sale is accepted, and a drain that stops right there
    merging(pipeline, max_defer_s=60)
    pipeline.enqueue(backlog())
    pipeline.runtime.settings.drain.max_jobs = ITEMS + 2  # items, opening stock, sale 1
    pipeline.drain(rounds=0)
    assert pipeline.job("00:sale:1").state == "accepted"
    assert pipeline.job("00:sale:1:stock-out").state == "pending"
    pipeline.runtime.settings.drain.max_jobs = 500

    # When the branch drains again 61 s after that sale was accepted
    branch_id = int(pipeline.branch().id)
    later = dataclasses.replace(
        pipeline.runtime.drain_context(), clock=lambda: time.time() + 61, sleep=lambda s: None
    )
    for _ in range(5):
        if drain(branch_id, later).status == "idle":
            break

    # Then sale 1's stock-out went first, alone, before sale 2; the later ones, each ready
    # only just, waited behind the sales after them and went merged
    order = kra_order(pipeline)
    assert order.index("IO2") < order.index("S00-T2")
    assert pipeline.job("00:sale:1:stock-out").merged_into is None
    movements = writes(pipeline, "insertStockIO")
    assert len(movements) == 3
    assert order.index("IO3") > order.index(f"S00-T{SALES}")
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_merged_send_with_an_unknown_outcome_is_resent_byte_for_byte(
    pipeline: Pipeline,
) -> None:
    # Given a backlog with merging on, and the merged send's connection dropped (unknown)
    merging(pipeline)
    sales = opening_at_kra(pipeline)
    pipeline.sim.add_fault(endpoint="insertStockIO", kind="drop", times=1)
    pipeline.enqueue(sales)

    pipeline.drain()

    # Then the carrier was resent with the identical body and number, never merged again
    # differently, and every stock-out ended accepted with it
    outs = stock_outs(pipeline)
    carrier = outs[0]
    with pipeline.runtime.engine.connect() as conn:
        sends = oq.job_attempts(conn, carrier.id)
    assert len(sends) == 2 and len({a.request_hash for a in sends}) == 1
    assert {o.state for o in outs} == {"accepted"}
    assert {o.sar_no for o in outs} == {2}
    assert len(writes(pipeline, "insertStockIO")) == 2
    assert_kra_agrees_with_the_outbox(pipeline)


def test_stock_outs_wait_merged_while_their_carrier_is_unknown(pipeline: Pipeline) -> None:
    # Given the merged send's answer is lost and its resend due only later
    merging(pipeline)
    sales = opening_at_kra(pipeline)
    pipeline.runtime.settings.retry.base_s = 30
    pipeline.runtime.settings.retry.cap_s = 30
    pipeline.sim.add_fault(endpoint="insertStockIO", kind="lost_answer", times=1)
    pipeline.enqueue(sales)
    pipeline.runtime.settings.drain.max_jobs = SALES + 1  # the sales, then the merged send
    pipeline.drain(rounds=0)
    pipeline.runtime.settings.drain.max_jobs = 500
    outs = stock_outs(pipeline)
    assert outs[0].state == "unknown"
    assert {o.state for o in outs[1:]} == {"merged"}
    with pipeline.runtime.engine.connect() as conn:
        assert oq.job_counts(conn)["merged"] == SALES - 1
    # ... which the backlog gauge shows (not only the carrier)
    gauges = CollectorRegistry()
    gauges.register(DbCollector(pipeline.runtime.engine))
    page = generate_latest(gauges).decode()
    assert {
        s.labels["kind"]: s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "etims_jobs" and s.labels["state"] == "merged" and s.value
    } == {"stock_io": SALES - 1}

    # When it is resent (KRA recorded the first: it answers 921 to the resend)
    branch_id = int(pipeline.branch().id)
    later = dataclasses.replace(
        pipeline.runtime.drain_context(), clock=lambda: time.time() + 60, sleep=lambda s: None
    )
    for _ in range(5):
        if drain(branch_id, later).status == "idle":
            break

    # Then KRA holds the merged movement once, and every stock-out is accepted under it
    assert len(writes(pipeline, "insertStockIO")) == 2
    assert {(o.state, o.sar_no) for o in stock_outs(pipeline)} == {("accepted", 2)}
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_merged_send_that_went_dead_is_replayed_as_one(pipeline: Pipeline) -> None:
    # Given the merged send is refused for good (KRA answers 910 once)
    merging(pipeline)
    sales = opening_at_kra(pipeline)
    pipeline.sim.add_fault(endpoint="insertStockIO", kind="result_code", code="910", times=1)
    pipeline.enqueue(sales)
    pipeline.drain()
    outs = stock_outs(pipeline)
    carrier = outs[0]
    assert {o.state for o in outs} == {"dead"}, [(o.state, o.result_message) for o in outs]
    assert all(o.merged_into == carrier.id for o in outs[1:])
    # ... its stock masters wait, blocked
    assert "blocked" in {s for k, s in pipeline.states().items() if ":stock-master:" in k}

    # When an operator replays a stock-out it carried, or the branch's dead jobs
    member = outs[1]
    try:
        replay(pipeline.runtime.engine, member.id, OPS, reason="retry")
    except OperatorError as exc:
        assert f"replay job {carrier.id}" in str(exc)
    else:
        raise AssertionError("a merged stock-out was replayed on its own")
    replayed = replay_branch(pipeline.runtime.engine, TIN, "00", OPS, reason="fixed")

    # Then only the carrier went back, bringing the others with it
    assert replayed == [carrier.id]
    pipeline.drain()
    outs = stock_outs(pipeline)
    assert {o.state for o in outs} == {"accepted"}
    assert len({o.sar_no for o in outs}) == 1
    merged_sends = [m for m in writes(pipeline, "insertStockIO") if m["body"]["sarTyCd"] == "11"]
    assert len(merged_sends) == 1
    assert set(pipeline.states().values()) == {"accepted", "superseded"}
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_parked_merged_send_lets_its_stock_outs_go_and_merges_them_again(
    pipeline: Pipeline,
) -> None:
    # Given the merged send is refused as every job of the branch would be (a device error:
    # the branch parks, the carrier keeps its sarNo, its body is rebuilt once fixed)
    merging(pipeline)
    sales = opening_at_kra(pipeline)
    pipeline.sim.add_fault(endpoint="insertStockIO", kind="result_code", code="901", times=1)
    pipeline.enqueue(sales)
    assert pipeline.drain().status == "parked"
    outs = stock_outs(pipeline)
    assert {o.state for o in outs} == {"pending"}
    assert all(o.merged_into is None for o in outs)

    # When the operator unparks it
    unpark(pipeline.runtime.engine, TIN, "00", OPS, reason="device fixed")
    pipeline.drain()

    # Then they went merged again, under the number the carrier kept
    outs = stock_outs(pipeline)
    assert {(o.state, o.sar_no) for o in outs} == {("accepted", 2)}
    assert [m["body"]["sarTyCd"] for m in writes(pipeline, "insertStockIO")] == ["06", "11"]
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_dead_merged_send_replayed_with_merging_off_goes_one_by_one(
    pipeline: Pipeline,
) -> None:
    merging(pipeline)
    sales = opening_at_kra(pipeline)
    pipeline.sim.add_fault(endpoint="insertStockIO", kind="result_code", code="910", times=1)
    pipeline.enqueue(sales)
    pipeline.drain()
    carrier = stock_outs(pipeline)[0]
    assert carrier.state == "dead"

    pipeline.runtime.settings.coalesce.stock_io = False
    replay(pipeline.runtime.engine, carrier.id, OPS, reason="fixed")
    pipeline.drain()

    outs = stock_outs(pipeline)
    assert {o.state for o in outs} == {"accepted"}
    assert len({o.sar_no for o in outs}) == SALES
    assert all(o.merged_into is None for o in outs)
    assert set(pipeline.states().values()) <= {"accepted", "superseded"}
    assert_kra_agrees_with_the_outbox(pipeline)


def test_merging_passes_stock_before_sale_on_a_host_that_checks_it(pipeline_factory) -> None:
    # Given a host that refuses a sale of goods it holds no stock for (live GavaConnect)
    p = merging(pipeline_factory(stock_before_sale=True))
    p.enqueue(backlog())

    p.drain()

    # Then nothing was refused, and stock-outs were merged
    assert set(p.states().values()) == {"accepted", "superseded"}
    assert len(writes(p, "insertStockIO")) == 2
    assert_kra_agrees_with_the_outbox(p)


def test_the_api_and_result_events_show_the_merged_send(pipeline: Pipeline) -> None:
    merging(pipeline)
    pipeline.enqueue(backlog())
    pipeline.drain()
    outs = stock_outs(pipeline)
    carrier, member = outs[0], outs[5]

    server = start_intake(str(pipeline.runtime.engine.url.render_as_string(hide_password=False)))
    try:
        client = server.client(server.key(admin=True))
        view = client.get(f"/v1/jobs/{member.id}").json()
        carrier_view = client.get(f"/v1/jobs/{carrier.id}").json()
    finally:
        server.stop()

    assert view["state"] == "accepted"
    assert view["merged_into"] == carrier.id
    assert view["sar_no"] == carrier_view["sar_no"] == carrier.sar_no
    assert carrier_view["merged_into"] is None
    # ... and from the merged send to the originals: the carrier lists what it carried
    assert carrier_view["merged"] == [o.id for o in outs[1:]]
    assert view["merged"] == []
    body = last_event(pipeline, member.id)
    assert body["state"] == "accepted"
    assert body["merged_into"] == carrier.id and body["sar_no"] == carrier.sar_no
    carrier_event = last_event(pipeline, carrier.id)
    assert carrier_event["state"] == "accepted"
    assert carrier_event["merged"] == [o.id for o in outs[1:]]


def last_event(p: Pipeline, job_id: int) -> dict[str, Any]:
    """The body of the job's last result event (what its webhook carries as ``data``)."""
    with p.runtime.engine.connect() as conn:
        events = conn.execute(
            select(result_events.c.body)
            .where(result_events.c.job_id == job_id)
            .order_by(result_events.c.id)
        ).all()
    return dict(json.loads(events[-1].body))


def scraped() -> Counter[tuple[str, tuple[tuple[str, str], ...]]]:
    """This process's /metrics page (the drain's counters): {(sample, labels): value}."""
    page, _ = metrics.render()
    samples: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for family in text_string_to_metric_families(page.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def counted(
    before: Counter[tuple[str, tuple[tuple[str, str], ...]]], name: str, **labels: str
) -> float:
    """How much the samples called ``name`` with ``labels`` grew since ``before``."""
    now = scraped()
    return sum(
        value - before[key]
        for key, value in now.items()
        if key[0] == name and set(labels.items()) <= set(key[1])
    )


def test_the_metrics_count_every_stock_out_a_merged_send_carried(pipeline: Pipeline) -> None:
    # Given a backlog drained with merging on: 12 stock-outs in one merged send
    merging(pipeline)
    before = scraped()
    pipeline.enqueue(backlog())
    pipeline.drain()
    outs = stock_outs(pipeline)
    assert len({o.sar_no for o in outs}) == 1

    # Then the scrape counts every stock-out accepted (the carrier and the 11 it carried,
    # besides the opening stock-in), as the outbox does, and each one's enqueue-to-accepted
    with pipeline.runtime.engine.connect() as conn:
        accepted = conn.execute(
            select(jobs.c.kind, jobs.c.id).where(jobs.c.state == "accepted")
        ).all()
    stock_io = sum(1 for r in accepted if r.kind == "stock_io")
    assert stock_io == 1 + SALES
    assert counted(before, "etims_job_outcomes_total", outcome="accepted") == len(accepted)
    assert (
        counted(before, "etims_job_outcomes_total", kind="stock_io", outcome="accepted") == stock_io
    )
    assert (
        counted(before, "etims_job_enqueue_to_accepted_seconds_count", kind="stock_io") == stock_io
    )
    # ... and how many rode in merged sends, and in how many sends
    assert counted(before, "etims_stock_outs_merged_total", outcome="accepted") == SALES - 1
    assert counted(before, "etims_merged_sends_total", outcome="accepted") == 1
    # ... so the writes KRA received are the accepted jobs less the stock-outs merged
    assert len(accepted) - (SALES - 1) == len(ledger_writes(pipeline.sim.ledger_path)) - 1


def test_the_metrics_count_every_stock_out_of_a_dead_merged_send_dead(pipeline: Pipeline) -> None:
    # Given the merged send is refused for good (910)
    merging(pipeline)
    sales = opening_at_kra(pipeline)
    pipeline.sim.add_fault(endpoint="insertStockIO", kind="result_code", code="910", times=1)
    before = scraped()
    pipeline.enqueue(sales)
    pipeline.drain()
    assert {o.state for o in stock_outs(pipeline)} == {"dead"}

    # Then every stock-out is a dead letter with KRA's code, the carried ones too
    assert counted(before, "etims_job_outcomes_total", kind="stock_io", outcome="dead") == SALES
    assert counted(before, "etims_job_dead_letters_total", kind="stock_io", code="910") == SALES
    assert counted(before, "etims_stock_outs_merged_total", outcome="dead") == SALES - 1
    assert counted(before, "etims_merged_sends_total", outcome="dead") == 1
    assert counted(before, "etims_stock_outs_merged_total", outcome="accepted") == 0


def test_sigkill_during_a_merged_send_loses_and_doubles_nothing(
    relay_env: RelayEnv, workers: WorkerPool, simulator
) -> None:
    # Given a worker with merging on that has the branch's opening stock at KRA
    relay_env.extra["ETIMS_COALESCE__STOCK_IO"] = "true"
    init_devices(relay_env, ["00"])
    records = backlog()
    relay_env.enqueue(records[: ITEMS + 1])
    workers.start(1, concurrency=2)
    wait_until(
        lambda: (s := relay_env.status()) and all_terminal(s),
        timeout=60,
        what="the opening stock at KRA",
    )

    # When a backlog of sales arrives, and the worker is SIGKILLed while KRA holds the merged
    # stock-out's answer back
    simulator.add_fault(endpoint="insertStockIO", kind="latency", ms=1500, when="before", times=1)
    relay_env.enqueue(records[ITEMS + 1 :])
    engine = make_engine(relay_env.database_url)
    try:
        wait_until(
            lambda: _merged_in_flight(engine), timeout=60, interval=0.05, what="a merged send"
        )
        workers.kill(workers.alive()[0])
        workers.start(1, concurrency=2)

        # Then every job ends done, once
        status = wait_until(
            lambda: (
                (s := relay_env.status()) and all_terminal(s) and s["jobs"]["merged"] == 0 and s
            ),
            timeout=120,
            what="every job done after the kill",
        )
        with engine.connect() as conn:
            outs = conn.execute(
                select(jobs).where(jobs.c.kind == "stock_io", jobs.c.sar_ty_cd == "11")
            ).all()
    finally:
        engine.dispose()
    assert status["jobs"]["accepted"] + status["jobs"]["superseded"] == len(records), status
    assert {o.state for o in outs} == {"accepted"}
    # ... KRA holds each stock-out's quantity once: no sarNo twice, none released twice
    report = verify_ledger(simulator.ledger)
    assert report.ok, report.violations
    movements = ledger_writes(simulator.ledger, ["insertStockIO"])
    assert max(Counter(m["body"]["sarNo"] for m in movements).values()) == 1
    sold = sum(sold_per_sale(records).values())
    released = sum(
        Decimal(str(line["qty"]))
        for m in movements
        if m["body"]["sarTyCd"] == "11"
        for line in m["body"]["itemList"]
    )
    assert released == sold
    assert len(movements) < 1 + SALES  # merged


def _merged_in_flight(engine: Any) -> bool:
    with engine.connect() as conn:
        states = Counter(
            r.state
            for r in conn.execute(
                select(jobs.c.state).where(jobs.c.kind == "stock_io", jobs.c.sar_ty_cd == "11")
            )
        )
    return states["merged"] > 0 and states["in_flight"] == 1


def test_set_next_that_drops_a_merged_sends_number_lets_its_stock_outs_go(
    pipeline: Pipeline,
) -> None:
    # Given the merged send never reached KRA (the connection was refused), so it waits in
    # retry_wait with its sarNo and body, the others merged into it
    merging(pipeline)
    sales = opening_at_kra(pipeline)
    pipeline.runtime.settings.retry.base_s = 30
    pipeline.runtime.settings.retry.cap_s = 30
    pipeline.enqueue(sales)
    ctx = pipeline.runtime.drain_context()
    refused = dataclasses.replace(ctx, client=RefusedOnce(ctx.client, "insertStockIO"))
    for _ in range(5):
        if drain(int(pipeline.branch().id), refused).status in ("idle", "waiting"):
            break
    outs = stock_outs(pipeline)
    assert outs[0].state == "retry_wait" and outs[0].sar_no == 2
    assert {o.state for o in outs[1:]} == {"merged"}

    # When the operator sets the branch's next sarNo (the carrier's number never reached KRA,
    # so it takes a fresh one and its body is built again)
    set_next(pipeline.runtime.engine, TIN, "00", OPS, invc_no=None, sar_no=2, force=True,
             reason="KRA support says 2")  # fmt: skip
    drain_later(pipeline, 60)

    # Then every stock-out reached KRA once, after its sale, and ended accepted: none is
    # left merged into a send that no longer carries it, none accepted without being sent
    outs = stock_outs(pipeline)
    assert {o.state for o in outs} == {"accepted"}, [(o.id, o.state) for o in outs]
    released = [
        line
        for m in writes(pipeline, "insertStockIO")
        if m["body"]["sarTyCd"] == "11"
        for line in m["body"]["itemList"]
    ]
    assert sum(Decimal(str(line["qty"])) for line in released) == sum(
        sold_per_sale(backlog()).values()
    )
    assert set(pipeline.states().values()) <= {"accepted", "superseded"}
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_stock_out_without_its_dependency_is_not_merged_ahead_of_an_unsent_sale(
    pipeline_factory: Any,
) -> None:
    # Given a backlog whose sale 5 waits for a job of branch 01, and whose stock-out for
    # sale 5 came without its declared dependency (a raw envelope, a CSV row)
    p = merging(pipeline_factory(branches=("00", "01")))
    p.enqueue([b.item(TIN, "01", "elsewhere", item_cd=item_code(1), item_nm="Item",
                      price=Decimal("116"))])  # fmt: skip
    records = backlog()
    for record in records:
        if record["idempotency_key"] == "00:sale:5":
            record["depends_on"] = [*record.get("depends_on", ()), "elsewhere"]
        if record["idempotency_key"] == "00:sale:5:stock-out":
            record.pop("depends_on", None)
    p.enqueue(records)

    # When branch 00 drains while sale 5 cannot go yet
    p.drain()

    # Then sale 5's stock-out was not sent inside the merged stock-out of sales 1-4: it waits
    # behind its sale
    assert p.job("00:sale:5").state == "pending"
    assert p.job("00:sale:5:stock-out").state == "pending"
    assert p.job("00:sale:4:stock-out").state == "accepted"

    # ... and once branch 01 delivers, it reaches KRA after its sale
    p.drain("01")
    p.drain()
    order = kra_order(p)
    assert order.index(f"IO{p.job('00:sale:5:stock-out').sar_no}") > order.index("S00-T5")
    assert set(p.states().values()) <= {"accepted", "superseded"}
    assert_kra_agrees_with_the_outbox(p)


def test_a_stock_movement_enqueued_before_0010_is_passed_by_nothing(pipeline: Pipeline) -> None:
    # Given a restock enqueued mid-backlog by an intake process from before migration 0010
    # (a rolling deploy): its row has no sar_ty_cd
    merging(pipeline)
    records = backlog()
    after_six = next(i for i, r in enumerate(records) if r["idempotency_key"] == "00:sale:7")
    restock = b.stock_io(
        TIN, "00", "restock", [b.SaleLine(item_code(1), "Item", Decimal(9), Decimal("116"))],
        sar_ty_cd="06", at=NOW,
    )  # fmt: skip
    records.insert(after_six, restock)
    pipeline.enqueue(records)
    with pipeline.runtime.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.idempotency_key == "restock").values(sar_ty_cd=None))

    pipeline.drain()

    # Then it kept its place, as a stock-in does: no later sale went before it, no later
    # stock-out was merged past it
    order = kra_order(pipeline)
    restock_at = order.index(f"IO{pipeline.job('restock').sar_no}")
    assert order.index("S00-T6") < restock_at < order.index("S00-T7")
    outs = stock_outs(pipeline)
    assert all(o.sar_no > pipeline.job("restock").sar_no for o in outs[6:])
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_stock_out_left_merged_into_a_send_that_does_not_carry_it_still_goes(
    pipeline: Pipeline,
) -> None:
    # Given stock-outs left merged into stock-outs whose bodies were dropped (by a version
    # before this fix), and merging now off
    records = backlog()
    pipeline.enqueue(records)
    carriers = {m: pipeline.job(f"00:sale:{c}:stock-out").id for c, m in ((1, 2), (6, 7))}
    with pipeline.runtime.engine.begin() as conn:
        for member, carrier_id in carriers.items():
            conn.execute(
                update(jobs)
                .where(jobs.c.idempotency_key == f"00:sale:{member}:stock-out")
                .values(state="merged", merged_into=carrier_id)
            )

    # When the branch drains (sale 1's stock-out riding on its sale's acceptance; sale 6's
    # prepared after a drain that stopped at its sale)
    pipeline.runtime.settings.drain.max_jobs = ITEMS + 1 + 6 * 3 - 2
    pipeline.drain(rounds=0)
    pipeline.runtime.settings.drain.max_jobs = 500
    pipeline.drain()

    # Then every stock-out went, in enqueue order, each once
    assert set(pipeline.states().values()) <= {"accepted", "superseded"}
    assert all(o.merged_into is None for o in stock_outs(pipeline))
    assert kra_order(pipeline) == seq_order(pipeline)
    assert len(writes(pipeline, "insertStockIO")) == 1 + SALES
    assert_kra_agrees_with_the_outbox(pipeline)


def test_a_stock_out_whose_data_breaks_the_merged_body_does_not_take_the_others_down(
    pipeline: Pipeline,
) -> None:
    # Given a backlog in which one stock-out's line cannot make a body (its data went bad
    # after enqueue: a tax type the branch has no rate for)
    merging(pipeline)
    sales = opening_at_kra(pipeline)
    pipeline.enqueue(sales)
    bad = pipeline.job("00:sale:3:stock-out")
    payload = json.loads(bad.payload)
    payload["itemList"][0]["taxTyCd"] = "Z"
    with pipeline.runtime.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == bad.id).values(payload=json.dumps(payload)))

    pipeline.drain()

    # Then only that stock-out is dead, with the reason; every other one reached KRA
    states = {o.idempotency_key: o.state for o in stock_outs(pipeline)}
    assert states.pop("00:sale:3:stock-out") == "dead"
    assert set(states.values()) == {"accepted"}
    assert pipeline.job("00:sale:3:stock-out").result_code == "LOCAL"
    assert len(writes(pipeline, "insertStockIO")) < 1 + SALES  # the others still merged


def drain_later(p: Pipeline, seconds: float) -> None:
    """Drain branch 00 as if ``seconds`` had passed (a retry's wait is over)."""
    branch_id = int(p.branch().id)
    later = dataclasses.replace(
        p.runtime.drain_context(), clock=lambda: time.time() + seconds, sleep=lambda s: None
    )
    for _ in range(10):
        if drain(branch_id, later).status in ("idle", "parked"):
            break


class RefusedOnce:
    """The OSCU client, but the first call to ``endpoint`` fails to connect (provably never
    reached KRA)."""

    def __init__(self, client: Any, endpoint: str) -> None:
        self.client, self.endpoint, self.fired = client, endpoint, False

    def call(self, endpoint: str, body: Any, **kwargs: Any) -> CallOutcome:
        if endpoint == self.endpoint and not self.fired:
            self.fired = True
            return CallOutcome(OutcomeKind.TRANSIENT, endpoint, None, "connection refused",
                               may_have_reached_kra=False, error="ConnectError")  # fmt: skip
        return self.client.call(endpoint, body, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)
