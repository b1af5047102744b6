"""With KRA's "goods must be in the stock master before they are sold" rule on (the simulator's
``stock_before_sale``, live GavaConnect behaviour), on SQLite and PostgreSQL: a sale whose item
got stock first (stock-in 06, stock master) is signed; a sale of goods without stock is dead
with KRA's words, and the next sale takes its number."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from producers import builders as b
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
