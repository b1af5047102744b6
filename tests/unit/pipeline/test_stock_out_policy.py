"""Which stock-out waits behind a later sale (worker/defer.py), and what a merged send holds
(worker/stock_merge.py): decided from values, no database."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from schemas.jobs import JobKind, JobState
from schemas.settings import CoalesceSettings
from worker.defer import may_defer, passer
from worker.outbox.rows import BranchHead, Dependency, HeadJob, StockOut, StockOutDeferral
from worker.stock_merge import group, merged_payload

NOW = 1_000_000.0
ON = CoalesceSettings(stock_io=True, max_defer_jobs=3, max_defer_s=60)
OFF = CoalesceSettings()


def stock_out(sar_ty_cd: str = "11", *lines: tuple[str, int], **fields: Any) -> str:
    items = [
        {"itemSeq": n, "itemCd": code, "itemNm": "Item", "itemClsCd": "5059690800",
         "pkgUnitCd": "NT", "pkg": qty, "qtyUnitCd": "U", "qty": qty, "prc": 116,
         "totDcAmt": 0, "taxTyCd": "B", "splyAmt": 116 * qty}
        for n, (code, qty) in enumerate(lines or (("A", 1),), start=1)
    ]  # fmt: skip
    return json.dumps({"regTyCd": "A", "sarTyCd": sar_ty_cd, "ocrnDt": "20261201",
                       "itemList": items, **fields})  # fmt: skip


def job(kind: JobKind = JobKind.STOCK_IO, **fields: Any) -> HeadJob:
    base: dict[str, Any] = dict(
        id=1, tin="P051234567A", bhf_id="00", seq=10, kind=kind, idempotency_key="k",
        payload=stock_out(), original_job_id=None, state=JobState.PENDING, attempts=0,
        next_attempt_at=None, maybe_recorded=False, invc_no=None, sar_no=None, body=None,
        created_at=NOW - 100, dependencies=(), wakes_dependents=False,
    )  # fmt: skip
    return HeadJob(**(base | fields))


def facts(sale: HeadJob | None = None, **fields: Any) -> StockOutDeferral:
    past = BranchHead(100, 7, 3, () if sale is None else (sale,))
    base: dict[str, Any] = dict(deferred_jobs=1, barriers=0, head_ready_since=NOW - 1)
    return StockOutDeferral(past=past, **(base | fields))


SALE = job(JobKind.SALE, id=2, seq=11, payload="{}")


def test_a_never_sent_stock_out_may_wait_only_with_merging_on() -> None:
    assert may_defer(job(), ON)
    assert not may_defer(job(), OFF)


@pytest.mark.parametrize(
    "head",
    [
        job(payload=stock_out("06")),  # a stock-in: a later sale may need its goods
        job(body="{}", state=JobState.RETRY_WAIT),  # may have reached KRA: its turn
        job(maybe_recorded=True),
        job(state=JobState.IN_FLIGHT),
        job(JobKind.STOCK_MASTER, payload='{"itemCd": "A"}'),
    ],
)
def test_nothing_else_waits(head: HeadJob) -> None:
    assert not may_defer(head, ON)


def test_a_ready_later_sale_goes_first_within_the_bounds() -> None:
    assert passer(job(), facts(SALE, deferred_jobs=3), NOW, ON) == SALE


@pytest.mark.parametrize(
    ("sale", "fields"),
    [
        (None, {}),  # no later sale: the stock-out goes as it always did
        (SALE, {"barriers": 1}),  # an item or a stock-in between keeps its place
        (SALE, {"deferred_jobs": 4}),  # past MAX_DEFER_JOBS
        (SALE, {"head_ready_since": NOW - 60}),  # ready for MAX_DEFER_S already
        (job(JobKind.SALE, id=2, dependencies=(Dependency(9, JobState.PENDING),)), {}),
        (job(JobKind.SALE, id=2, state=JobState.RETRY_WAIT, next_attempt_at=NOW + 5), {}),
    ],
)
def test_otherwise_the_oldest_stock_out_goes(sale: HeadJob | None, fields: dict) -> None:
    assert passer(job(), facts(sale, **fields), NOW, ON) is None


def test_a_stock_out_waits_from_when_it_was_ready_not_from_its_enqueue() -> None:
    # enqueued 100 s ago (a backlog), its sale accepted 1 s ago: it may wait
    assert passer(job(), facts(SALE, head_ready_since=NOW - 1), NOW, ON) == SALE
    # with no dependency it has been ready since its enqueue
    assert passer(job(), facts(SALE, head_ready_since=None), NOW, ON) is None


def member(n: int, payload: str) -> StockOut:
    return StockOut(id=n, seq=10 + n, payload=payload)


def test_lines_of_one_item_are_summed_and_amounts_computed_again() -> None:
    members = [member(2, stock_out("11", ("A", 2), ("B", 1))), member(3, stock_out("11", ("A", 4)))]
    merged = json.loads(merged_payload(stock_out("11", ("A", 1)), members))
    assert [(line["itemSeq"], line["itemCd"], line["qty"], line["pkg"]) for line in
            merged["itemList"]] == [(1, "A", 7, 7), (2, "B", 1, 1)]  # fmt: skip
    assert all("splyAmt" not in line for line in merged["itemList"])
    assert merged["sarTyCd"] == "11"


def test_a_different_header_ends_the_group_and_so_does_the_line_bound() -> None:
    # a later stock-out never goes inside a send ahead of an earlier one left out of it
    candidates = [
        member(2, stock_out("11", ("B", 1))),
        member(3, stock_out("11", ("A", 1))),
        member(4, stock_out("11", ("A", 1), custTin="P000000001Z")),  # another customer
        member(5, stock_out("11", ("C", 1))),
    ]
    assert [m.id for m in group(stock_out("11", ("A", 1)), candidates, 3)] == [2, 3]
    assert [m.id for m in group(stock_out("11", ("A", 1)), candidates, 1)] == []


def test_the_merged_date_is_the_latest() -> None:
    later = json.loads(stock_out())
    later["ocrnDt"] = "20261203"
    merged = json.loads(merged_payload(stock_out(), [member(2, json.dumps(later))]))
    assert merged["ocrnDt"] == "20261203"
    assert Decimal(str(merged["itemList"][0]["qty"])) == 2
