"""The till client against a scripted intake (httpx.MockTransport): spool order, refusals,
held dependents, outages. The real intake and KRA round trip is in tests/e2e/producers."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers.till import SaleLine, SpoolConflict, Till

TIN = "P051234567A"
LINE = SaleLine("KE2NTNO0000001", "Soap", Decimal("1"), Decimal("116"))


class FakeIntake:
    """Accepts batches like the intake; refuses keys listed in ``refuse``; can be down."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.refuse: set[str] = set()
        self.down = False
        self.status_for_next: list[int] = []
        self.ids: dict[str, int] = {}
        self.results: dict[int, dict[str, Any]] = {}
        self.malformed_once = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        if request.method == "GET":
            job_id = int(request.url.path.rsplit("/", 1)[1])
            view = self.results.get(job_id, {"state": "pending"})
            return httpx.Response(200, json={"id": job_id, "kra": {}, **view})
        if self.status_for_next:
            return httpx.Response(
                self.status_for_next.pop(0), json={"errors": []}, headers={"Retry-After": "0"}
            )
        jobs = json.loads(request.content)["jobs"]
        bad = [i for i, job in enumerate(jobs) if job["idempotency_key"] in self.refuse]
        if bad:
            return httpx.Response(
                422,
                json={
                    "errors": [
                        {"index": i, "path": "payload.itemList.0.qty", "message": "bad qty"}
                        for i in bad
                    ]
                },
            )
        answer = []
        for index, job in enumerate(jobs):
            key = job["idempotency_key"]
            if key not in self.ids:
                self.ids[key] = len(self.ids) + 1
                self.received.append(key)
            answer.append(
                {
                    "index": index,
                    "id": self.ids[key],
                    "idempotency_key": key,
                    # a key it already holds comes back with that job's state
                    "state": self.results.get(self.ids[key], {}).get("state", "pending"),
                    "created": True,
                }
            )
        if self.malformed_once:  # an answer without job ids
            self.malformed_once = False
            answer = [{k: v for k, v in job.items() if k != "id"} for job in answer]
        return httpx.Response(202, json={"request_id": "r", "jobs": answer})


#: What GET /v1/jobs/{id} says of a sale KRA signed.
SIGNED: dict[str, Any] = {
    "state": "accepted",
    "signature": {
        "curRcptNo": 7,
        "totRcptNo": 9,
        "intrlData": "ABC",
        "rcptSign": "SIGN",
        "sdcDateTime": "20261122093000",
    },
    "qr_url": "https://etims-sbx.kra.go.ke/x",
    "invc_no": 1,
    "sdc_id": "KRACU0100000001",
    "mrc_no": "WIS00000001",
}


@pytest.fixture
def make_till(tmp_path: Path) -> Callable[..., Till]:
    tills: list[Till] = []

    def make(fake: FakeIntake, **options: Any) -> Till:
        till = Till(
            tmp_path / "spool.db",
            "http://intake.test",
            "etr_key",
            tin=TIN,
            bhf_id="00",
            start=False,
            transport=httpx.MockTransport(fake),
            **options,
        )
        tills.append(till)
        return till

    yield make  # type: ignore[misc]
    for till in tills:
        till.close()


def test_sales_spool_while_the_intake_is_down_and_go_in_order_when_it_is_back(
    make_till: Callable[..., Till],
) -> None:
    fake = FakeIntake()
    fake.down = True
    till = make_till(fake, batch_size=4)
    for n in range(1, 4):
        till.enqueue_sale(f"s{n}", [LINE], trd_invc_no=f"T{n}")
    report = till.flush()
    assert report.error and "unreachable" in report.error
    assert till.status()["spooled"] == 9 and till.status()["refused"] == 0

    fake.down = False
    report = till.flush()
    assert report.error is None and report.forwarded == 9
    assert fake.received[:3] == ["s1", "s1:stock-out", "s1:stock-master:KE2NTNO0000001"]
    assert [k for k in fake.received if ":" not in k] == ["s1", "s2", "s3"]
    assert till.status()["forwarded"] == 9


def test_a_refused_record_is_kept_aside_its_dependents_held_others_go_on(
    make_till: Callable[..., Till],
) -> None:
    fake = FakeIntake()
    fake.refuse = {"s2"}
    till = make_till(fake)
    for n in range(1, 4):
        till.enqueue_sale(f"s{n}", [LINE], trd_invc_no=f"T{n}")
    report = till.flush()
    assert report.refused == 1 and report.refused_keys == ["s2"]
    assert [k for k in fake.received if ":" not in k] == ["s1", "s3"]
    refused = till.spool.get("s2")
    assert refused is not None and refused["status"] == "refused"
    assert refused["error"] == "422: payload.itemList.0.qty: bad qty"
    held = till.spool.get("s2:stock-out")
    assert held is not None and held["status"] == "held" and "'s2'" in held["error"]
    assert till.spool.get("s2:stock-master:KE2NTNO0000001")["status"] == "held"  # type: ignore[index]

    # The operator fixes the cause and requeues: the record and its dependents go, in order
    fake.refuse = set()
    for key in ("s2", "s2:stock-out", "s2:stock-master:KE2NTNO0000001"):
        till.spool.requeue(key)
    till.flush()
    assert fake.received[-3:] == ["s2", "s2:stock-out", "s2:stock-master:KE2NTNO0000001"]


def test_transient_answers_refuse_nothing_and_413_halves_the_batch(
    make_till: Callable[..., Till],
) -> None:
    fake = FakeIntake()
    till = make_till(fake, batch_size=8)
    for n in range(8):
        till.enqueue_item(f"i{n}", item_cd=f"KE2NTNO000000{n}", item_nm="x", price=Decimal(1))
    for status in (401, 429, 503):
        fake.status_for_next = [status]
        report = till.flush()
        assert report.error and report.refused == 0, status
    fake.status_for_next = [413, 413]
    report = till.flush()
    assert report.error is None and report.forwarded == 8 and report.refused == 0
    assert fake.received == [f"i{n}" for n in range(8)]


def test_results_and_signatures_come_back_to_the_spool(make_till: Callable[..., Till]) -> None:
    fake = FakeIntake()
    till = make_till(fake)
    till.enqueue_sale("s1", [LINE], trd_invc_no="T1", with_stock=False)
    till.flush()
    assert till.receipt("s1") is None
    fake.results[fake.ids["s1"]] = SIGNED
    assert till.flush().results == 1
    receipt = till.receipt("s1")
    assert receipt is not None and receipt.rcpt_sign == "SIGN" and receipt.cur_rcpt_no == 7
    assert receipt.state == "accepted" and receipt.invc_no == 1
    assert till.flush().results == 0  # final states are not polled again


def test_a_resent_sale_kra_already_signed_still_gets_its_signature(
    make_till: Callable[..., Till],
) -> None:
    # Given a sale the intake holds and KRA signed, but whose 202 the till never recorded
    # (it died first): the till forwards it again and the intake answers "accepted"
    fake = FakeIntake()
    fake.ids["s1"] = 1
    fake.results[1] = SIGNED
    till = make_till(fake)
    till.enqueue_sale("s1", [LINE], trd_invc_no="T1", with_stock=False)
    # When the till flushes
    till.flush()
    till.flush()
    # Then it fetched KRA's signature for the receipt all the same
    receipt = till.receipt("s1")
    assert receipt is not None and receipt.rcpt_sign == "SIGN"


def test_a_key_spooled_twice_is_a_no_op_and_with_other_content_an_error(
    make_till: Callable[..., Till],
) -> None:
    till = make_till(FakeIntake())
    till.enqueue_item("i1", item_cd="KE2NTNO0000001", item_nm="x", price=Decimal(1))
    till.enqueue_item("i1", item_cd="KE2NTNO0000001", item_nm="x", price=Decimal(1))
    with pytest.raises(SpoolConflict):
        till.enqueue_item("i1", item_cd="KE2NTNO0000001", item_nm="y", price=Decimal(1))
    assert till.status()["spooled"] == 1
    assert "etr_key" not in repr(till) + repr(till._forwarder)


def test_a_malformed_intake_answer_leaves_the_till_able_to_sell_and_resend(
    make_till: Callable[..., Till],
) -> None:
    # Given an intake whose 202 answer is malformed once (no job ids)
    fake = FakeIntake()
    fake.malformed_once = True
    till = make_till(fake, batch_size=10)
    till.enqueue_sale("s1", [LINE], trd_invc_no="T1")
    try:
        till.flush()
    except KeyError:
        pass  # the flush may fail; what matters is what the till can do next

    # Then the till still takes sales, and the next flush forwards everything once
    till.enqueue_sale("s2", [LINE], trd_invc_no="T2")
    report = till.flush()
    assert report.error is None
    assert till.status()["forwarded"] == 6 and till.status()["spooled"] == 0
    assert [k for k in fake.received if ":" not in k] == ["s1", "s2"]
