"""Host body rules at enqueue, on the real stores: what HTTP intake, the CLI and ``enqueue``
refuse (record, field path, KRA's reason; nothing written), what they complete (a credit
note's buyer), and the item-code allocator under concurrent use."""

# ruff: noqa: F811 - fixtures are imported into the module, then named as parameters

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from producers import builders as b
from producers.enqueue import EnqueueOptions, InvalidRecords, enqueue
from schemas.body_rules import BodyRules, item_code
from schemas.completion import loads_payload
from tests.helpers import RelayEnv
from tests.integration.producers.intake_fixtures import (  # noqa: F401 - fixtures
    IntakeServer,
    intake_factory,
)
from tests.workload import TIN
from worker.outbox.db import make_engine
from worker.outbox.models import jobs

AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
GAVA = EnqueueOptions(rules=BodyRules.for_flavour("gavaconnect"))
ETIMS = EnqueueOptions(rules=BodyRules.for_flavour("etims-api"))
BUYER, OTHER = "A123456789Z", "A000000001B"


def item(key: str, code: str, item_ty_cd: str = "2") -> dict[str, Any]:
    return b.item(
        TIN, "00", key, item_cd=code, item_nm="Soap", price=Decimal(116), item_ty_cd=item_ty_cd
    )


def line(code: str = "KE2NTNO0000001", qty: int = 2) -> b.SaleLine:
    return b.SaleLine(code, "Soap", Decimal(qty), Decimal(116))


def sale(key: str, cust_tin: str | None = BUYER) -> dict[str, Any]:
    record = b.sale(TIN, "00", key, [line()], trd_invc_no=key, at=AT, cust_tin=cust_tin)
    record["payload"]["custNm"] = "Wanjiku Stores"
    return record


def credit(key: str, original: str, cust_tin: str | None = None) -> dict[str, Any]:
    return b.credit_note(
        TIN, "00", key, original, [line(qty=1)], trd_invc_no=key, at=AT, cust_tin=cust_tin
    )


def as_json(*records: dict[str, Any]) -> str:
    return json.dumps({"jobs": list(records)}, default=float)


def job_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())


def stored_payload(engine: Engine, key: str) -> dict[str, Any]:
    with engine.connect() as conn:
        text = conn.execute(select(jobs.c.payload).where(jobs.c.idempotency_key == key)).scalar()
    return loads_payload(str(text))


@pytest.fixture
def db(db_url: str) -> Any:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


# --------------------------------------------------------------------------- intake


def test_intake_refuses_item_codes_and_pkg_the_way_gavaconnect_does(
    intake_factory: Callable[..., IntakeServer],
) -> None:
    # pkg = qty = 2 on an unpackaged line: the spec's way, not GavaConnect's
    records = (item("i1", "KE2NTNO0000001"), item("i2", "SOAP-42"), sale("s1"))
    gava = intake_factory(options=GAVA)
    response = gava.client(gava.key()).post(
        "/v1/jobs", content=as_json(*records), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    item_error, pkg_error = response.json()["errors"]
    assert (item_error["index"], item_error["path"]) == (1, "payload.itemCd")
    assert "must be country (2 letters) + item type (1-3)" in item_error["message"]
    assert (pkg_error["index"], pkg_error["path"]) == (2, "payload.itemList.0.pkg")
    assert pkg_error["message"].startswith("expected 1 (1 package for pkgUnitCd NT")
    assert gava.job_count() == 0
    etims = intake_factory(options=ETIMS)
    accepted = etims.client(etims.key()).post(
        "/v1/jobs", content=as_json(*records), headers={"Content-Type": "application/json"}
    )
    assert accepted.status_code == 202, accepted.text


def test_intake_refuses_a_service_in_stock_declared_by_an_earlier_item_job(
    intake_factory: Callable[..., IntakeServer],
) -> None:
    intake = intake_factory(options=ETIMS)
    client = intake.client(intake.key())
    headers = {"Content-Type": "application/json"}
    # Given a service item enqueued earlier (its code does not say it is a service)
    assert (
        client.post(
            "/v1/jobs", content=as_json(item("svc", "DELIVERY", "3")), headers=headers
        ).status_code
        == 202
    )
    # When a stock-in of it is posted
    stock_in = b.stock_io(TIN, "00", "in", [line("DELIVERY", 5)], sar_ty_cd="06", at=AT)
    response = client.post("/v1/jobs", content=as_json(stock_in), headers=headers)
    # Then it is refused naming the line, and nothing is written
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["index"], error["path"]) == (0, "payload.itemList.0.itemCd")
    assert "item DELIVERY is a service (itemTyCd 3, from its item job)" in error["message"]
    assert intake.job_count() == 1


# --------------------------------------------------------------------------- enqueue, both stores


def test_a_service_in_stock_is_refused_only_while_the_rule_is_on(db: Engine) -> None:
    enqueue(db, [item("svc", "DELIVERY", "3")])
    master = b.stock_master(TIN, "00", "master", item_cd="DELIVERY")
    with pytest.raises(InvalidRecords) as refused:
        enqueue(db, [master])
    assert [(e.index, e.path) for e in refused.value.errors] == [(0, "payload.itemCd")]
    assert job_count(db) == 1
    off = EnqueueOptions(rules=BodyRules(no_service_stock=False))
    assert enqueue(db, [master], options=off)[0].created


def test_the_latest_item_job_decides_the_type(db: Engine) -> None:
    enqueue(db, [item("v1", "KE2NTNO0000007", "3")])
    enqueue(db, [item("v2", "KE2NTNO0000007", "2")])  # re-registered as goods
    master = b.stock_master(TIN, "00", "master", item_cd="KE2NTNO0000007")
    assert enqueue(db, [master])[0].created


def test_a_credit_note_takes_its_originals_buyer(db: Engine) -> None:
    # Given a sale to a buyer with a PIN, enqueued earlier
    enqueue(db, [sale("s1")])
    # When its credit note comes without a buyer, and another sale + credit note in one call
    enqueue(db, [credit("c1", "s1"), sale("s2"), credit("c2", "s2")])
    # Then each credit note carries its sale's PIN and name, in the header and the receipt
    for key in ("c1", "c2"):
        payload = stored_payload(db, key)
        assert (payload["custTin"], payload["custNm"], payload["receipt"]["custTin"]) == (
            BUYER,
            "Wanjiku Stores",
            BUYER,
        )


def test_a_credit_note_naming_another_pin_is_refused_and_nothing_written(db: Engine) -> None:
    enqueue(db, [sale("s1"), sale("s0", cust_tin=None)])
    for record, path, said in (
        (credit("c1", "s1", OTHER), "payload.custTin", f"the original sale's buyer PIN is {BUYER}"),
        (credit("c0", "s0", OTHER), "payload.custTin", "the original sale has no buyer PIN"),
    ):
        with pytest.raises(InvalidRecords) as refused:
            enqueue(db, [item("x", "KE2NTNO0000009"), record])
        [error] = refused.value.errors
        assert (error.index, error.path) == (1, path)
        assert error.message == (
            f"KRA only accepts credit notes with matching PINs: {said}, found {OTHER}"
        )
    assert job_count(db) == 2
    off = EnqueueOptions(rules=BodyRules(credit_note_buyer=False))
    enqueue(db, [credit("c1", "s1", OTHER), credit("c3", "s1")], options=off)
    assert stored_payload(db, "c1")["custTin"] == OTHER
    assert "custTin" not in stored_payload(db, "c3")  # nothing copied with the rule off


def test_a_repeated_credit_note_is_the_same_job(db: Engine) -> None:
    """The copy happens after the idempotency hash: re-sending what the producer sent is
    recognised as the same job, not as a conflict."""
    enqueue(db, [sale("s1")])
    first = enqueue(db, [credit("c1", "s1")])
    again = enqueue(db, [credit("c1", "s1")])
    assert (again[0].id, again[0].created) == (first[0].id, False)


# --------------------------------------------------------------------------- allocator


def test_concurrent_allocators_never_hand_out_the_same_code(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(4)]
    codes: list[str] = []
    lock = threading.Lock()

    def allocate(engine: Engine) -> None:
        allocator = b.ItemCodeAllocator(engine, TIN)
        for _ in range(15):
            code = allocator.allocate(pkg_unit_cd="NT", qty_unit_cd="NO")
            with lock:
                codes.append(code)

    threads = [threading.Thread(target=allocate, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    numbers = sorted(item_code(c).number for c in codes)  # type: ignore[union-attr]
    assert numbers == list(range(1, 61))
    assert all(c.startswith("KE2NTNO") and len(c) == 14 for c in codes)


def test_allocated_codes_pass_the_structure_rule_and_skip_hand_made_numbers(db: Engine) -> None:
    allocator = b.ItemCodeAllocator(db, TIN)
    first = allocator.allocate(item_ty_cd="3", pkg_unit_cd="OU", qty_unit_cd="NO")
    assert first == "KE3OUNO0000001"
    record = b.item(
        TIN,
        "00",
        "svc",
        item_cd=first,
        item_nm="Delivery",
        price=Decimal(100),
        item_ty_cd="3",
        pkg_unit_cd="OU",
    )
    enqueue(db, [record, item("hand", "KE2NTNO0000041")], options=GAVA)
    assert allocator.allocate() == "KE2NTNO0000042"
    assert b.ItemCodeAllocator(db, "P000000001Z").allocate() == "KE2NTNO0000001"  # per tin
    with pytest.raises(ValueError, match="needs exactly 2 characters"):
        allocator.allocate(qty_unit_cd="U")


# --------------------------------------------------------------------------- CLI


def test_cli_enqueue_names_the_line_and_field_and_writes_nothing(relay_env: RelayEnv) -> None:
    relay_env.extra["ETIMS_OSCU__FLAVOUR"] = "gavaconnect"
    relay_env.cli("db", "upgrade")
    good = item("i1", "KE2NTNO0000001")
    bad = item("i2", "KE2NTU0000002")
    text = "\n".join(json.dumps(r, default=float) for r in (good, bad)) + "\n"
    result = relay_env.cli("enqueue", "-", input=text, check=False)
    assert result.returncode == 1
    assert "line 2: payload.itemCd: 'KE2NTU0000002' must be country" in result.stdout
    one = b.sale(
        TIN,
        "00",
        "s1",
        [line()],
        trd_invc_no="s1",
        at=AT,
        cust_tin=BUYER,
        pkg_rule="one_for_unpackaged",
    )
    relay_env.enqueue([good, one])
    cn = b.credit_note(
        TIN,
        "00",
        "c1",
        "s1",
        [line(qty=1)],
        trd_invc_no="c1",
        at=AT,
        cust_tin=OTHER,
        pkg_rule="one_for_unpackaged",
    )
    result = relay_env.cli("enqueue", "-", input=json.dumps(cn, default=float), check=False)
    assert result.returncode == 1
    assert "line 1: payload.custTin: KRA only accepts credit notes with matching PINs" in (
        result.stdout
    )
    assert relay_env.status()["jobs"]["pending"] == 2
    relay_env.extra["ETIMS_OSCU__FLAVOUR"] = "etims-api"
    relay_env.extra["ETIMS_RULES__CREDIT_NOTE_BUYER"] = "false"
    relay_env.enqueue([bad, cn])
    assert relay_env.status()["jobs"]["pending"] == 4
