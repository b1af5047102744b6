"""Host body rules end to end (relay drain + simulator), on SQLite and PostgreSQL. With KRA's
"goods must be in the stock master before they are sold" rule on (the simulator's
``stock_before_sale``, live GavaConnect behaviour), a sale whose item got stock first (stock-in
06, stock master) is signed and a sale of goods without stock is dead with KRA's words; a relay
and a host both on the gavaconnect flavour agree on item codes and ``pkg``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from producers import builders as b
from producers.enqueue import EnqueueOptions, InvalidRecords, enqueue
from schemas.body_rules import BodyRules
from tests.helpers import ledger_writes
from tests.workload import TIN, item_code

NOW = datetime.now(UTC)
STOCKED, UNSTOCKED = item_code(1), item_code(2)


def line(code: str, qty: int = 1) -> b.SaleLine:
    return b.SaleLine(code, "Water", Decimal(qty), Decimal("116"))


def test_a_sale_is_signed_once_its_goods_are_in_the_stock_master(pipeline_factory: Any) -> None:
    pipeline = pipeline_factory(stock_before_sale=True)
    pipeline.enqueue(
        [
            b.item(TIN, "00", "i1", item_cd=STOCKED, item_nm="Water", price=Decimal("116")),
            b.item(TIN, "00", "i2", item_cd=UNSTOCKED, item_nm="Juice", price=Decimal("116")),
            b.stock_io(
                TIN, "00", "in", [line(STOCKED, 20)], sar_ty_cd="06", at=NOW, depends_on=["i1"]
            ),
            b.stock_master(TIN, "00", "master", item_cd=STOCKED, depends_on=["in"]),
            b.sale(
                TIN,
                "00",
                "no-stock",
                [line(UNSTOCKED)],
                trd_invc_no="T1",
                at=NOW,
                depends_on=["i2"],
            ),
            b.sale(
                TIN,
                "00",
                "stocked",
                [line(STOCKED, 2)],
                trd_invc_no="T2",
                at=NOW,
                depends_on=["master"],
            ),
        ]
    )
    pipeline.drain()
    refused, signed = pipeline.job("no-stock"), pipeline.job("stocked")
    assert refused.state == "dead"
    assert refused.result_message == f"Item {UNSTOCKED} does not exist in your stock master"
    assert signed.state == "accepted", signed.result_message
    sales = ledger_writes(pipeline.sim.ledger_path, ["saveTrnsSalesOsdc"])
    assert [(s["body"]["trdInvcNo"], s["body"]["invcNo"]) for s in sales] == [("T2", 1)]


def test_without_the_rule_goods_sell_before_any_stock(pipeline_factory: Any) -> None:
    pipeline = pipeline_factory()
    pipeline.enqueue(
        [
            b.item(TIN, "00", "i2", item_cd=UNSTOCKED, item_nm="Juice", price=Decimal("116")),
            b.sale(
                TIN,
                "00",
                "no-stock",
                [line(UNSTOCKED)],
                trd_invc_no="T1",
                at=NOW,
                depends_on=["i2"],
            ),
        ]
    )
    pipeline.drain()
    assert pipeline.job("no-stock").state == "accepted"


def test_a_gavaconnect_relay_and_host_agree_on_codes_and_pkg(pipeline_factory: Any) -> None:
    """Allocated item codes arrive in the sequence GavaConnect wants, and sales built with
    its pkg rule are signed; the same sale built the spec's way (pkg = qty) is what it
    refuses, which is why enqueue refuses it first."""
    pipeline = pipeline_factory(flavour="gavaconnect", stock_before_sale=True)
    engine = pipeline.runtime.engine
    options = EnqueueOptions(rules=BodyRules.for_flavour("gavaconnect"))
    allocator = b.ItemCodeAllocator(engine, TIN)
    codes = [allocator.allocate(), allocator.allocate()]
    records = [
        b.item(TIN, "00", f"i{n}", item_cd=code, item_nm="Water", price=Decimal("116"))
        for n, code in enumerate(codes)
    ]
    records += [
        b.stock_io(
            TIN, "00", "in", [line(codes[1], 5)], sar_ty_cd="06", at=NOW, depends_on=["i0", "i1"]
        ),
        b.stock_master(TIN, "00", "master", item_cd=codes[1], depends_on=["in"]),
    ]
    one = b.sale(
        TIN,
        "00",
        "s1",
        [line(codes[1], 2)],
        trd_invc_no="T1",
        at=NOW,
        depends_on=["master"],
        pkg_rule="one_for_unpackaged",
    )
    enqueue(engine, [*records, one], options=options)
    spec_way = b.sale(TIN, "00", "s2", [line(codes[1], 2)], trd_invc_no="T2", at=NOW)
    with pytest.raises(InvalidRecords, match=r"payload\.itemList\.0\.pkg"):
        enqueue(engine, [spec_way], options=options)
    pipeline.drain()
    assert {k: pipeline.job(k).state for k in ("i0", "i1", "in", "master", "s1")} == dict.fromkeys(
        ("i0", "i1", "in", "master", "s1"), "accepted"
    )
    items = ledger_writes(pipeline.sim.ledger_path, ["saveItem"])
    assert [w["body"]["itemCd"] for w in items] == ["KE2NTNO0000001", "KE2NTNO0000002"]
    [signed] = ledger_writes(pipeline.sim.ledger_path, ["saveTrnsSalesOsdc"])
    assert signed["body"]["itemList"][0]["pkg"] == 1
