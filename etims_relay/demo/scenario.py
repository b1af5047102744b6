"""The demo's shop: what three tills and a back office would send in a morning, as job envelopes.

Everything is deterministic (no RNG): the test and the reader can work out how many jobs of each
kind KRA must accept, and a failed run can be replayed exactly. Per branch, in enqueue order:

- the item catalogue (``saveItem``), then the opening stock: one ``insertStockIO`` of type 06
  and a ``saveStockMaster`` per item after it;
- ``sales`` sales, each built by :func:`producers.builders.sale_with_stock` (the sale, its
  type-11 stock-out, a stock master per item), with a few credit notes of earlier sales;
- two records that pass local validation but that KRA refuses definitively, because only KRA
  knows what is wrong with them:

  * a *stale stock count*: a ``saveStockMaster`` with an ``rsdQty`` the ERP read before the
    morning's sales. KRA keeps its own running balance and answers 910. Nothing depends on it:
    it ends ``dead`` and the rest of the branch goes on.
  * a *sale of an unregistered item* (the till knows the item, KRA never got its
    ``saveItem`` on this branch): KRA answers 910 naming ``itemList.0.itemCd``. Its stock-out
    and stock master depend on it, so they end ``blocked``. The demo then plays the operator's
    replay journey: it fixes the cause (enqueues the item's registration and its opening
    stock: :attr:`Scenario.repair`), replays the dead sale (``etims-relay replay``, audited),
    and the sale and its blocked dependents end ``accepted``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from producers import builders as b

TIN = "P051234567A"
#: Where the stale count and the bad sale go, as a fraction of the branch's sales.
STALE_COUNT_AT = 1 / 3
BAD_SALE_AT = 1 / 2
#: One credit note per this many sales (the first sale is always credited).
SALES_PER_CREDIT_NOTE = 25
#: Never registered on any branch: the bad sale sells it.
UNREGISTERED = b.SaleLine(
    "KE2NTNO0000099", "Gift card (never registered)", Decimal(1), Decimal(500)
)


@dataclass(frozen=True, slots=True)
class CatalogItem:
    code: str
    name: str
    price: Decimal
    tax: str


CATALOG = (
    CatalogItem("KE2NTNO0000001", "Bottled water 500ml", Decimal("58.00"), "B"),
    CatalogItem("KE2NTNO0000002", "Maize flour 2kg", Decimal("210.00"), "B"),
    CatalogItem("KE2NTNO0000003", "Fresh milk 1l", Decimal("65.00"), "A"),
    CatalogItem("KE2NTNO0000004", "Cooking oil 1l", Decimal("340.00"), "B"),
    CatalogItem("KE2NTNO0000005", "Exercise book A4", Decimal("45.00"), "E"),
)


@dataclass
class Scenario:
    """The records to enqueue and what KRA must make of them."""

    records: list[dict[str, Any]] = field(default_factory=list)
    #: kind -> jobs that must end accepted
    expected_accepted: Counter[str] = field(default_factory=Counter)
    #: idempotency keys that must end dead (KRA refuses them)
    expected_dead: set[str] = field(default_factory=set)
    #: idempotency keys that must end blocked (a dependency is dead) before the repair
    expected_blocked: set[str] = field(default_factory=set)
    #: the operator's fix, enqueued once the first run settled: the missing item, its stock
    repair: list[dict[str, Any]] = field(default_factory=list)
    #: dead jobs the operator replays after the fix (their blocked dependents follow)
    replay_keys: list[str] = field(default_factory=list)
    #: kind -> jobs accepted only thanks to the repair and the replays
    expected_after_repair: Counter[str] = field(default_factory=Counter)

    @property
    def expected_accepted_in_the_end(self) -> Counter[str]:
        return self.expected_accepted + self.expected_after_repair

    @property
    def expected_dead_in_the_end(self) -> set[str]:
        return self.expected_dead - set(self.replay_keys)

    def add(self, records: list[dict[str, Any]], outcome: str = "accepted") -> None:
        self.records += records
        for record in records:
            if outcome == "accepted":
                self.expected_accepted[record["kind"]] += 1
            elif outcome == "dead":
                self.expected_dead.add(record["idempotency_key"])
            else:
                self.expected_blocked.add(record["idempotency_key"])


def bhf_ids(branches: int) -> list[str]:
    return [f"{n:02d}" for n in range(branches)]


def opening_qty(sales: int) -> Decimal:
    """Enough that no balance goes negative: a sale takes at most 3 of any item."""
    return Decimal(3 * sales + 100)


def sale_lines(index: int) -> list[b.SaleLine]:
    """Sale ``index`` has 1-3 lines of distinct items, 1-3 of each (round robin)."""
    lines = []
    for k in range(1 + index % 3):
        item = CATALOG[(index + k) % len(CATALOG)]
        qty = Decimal(1 + (index + k) % 3)
        lines.append(b.SaleLine(item.code, item.name, qty, item.price, tax_ty_cd=item.tax))
    return lines


def build(branches: int, sales: int, at: datetime) -> Scenario:
    scenario = Scenario()
    for bhf in bhf_ids(branches):
        _branch(scenario, bhf, sales, at)
    return scenario


def credit_notes_at(sales: int) -> dict[int, int]:
    """Sale index after which a credit note goes -> the sale it credits (every 25th sale)."""
    return {
        min(original + 2, sales - 1): original
        for original in range(0, sales, SALES_PER_CREDIT_NOTE)
    }


def _branch(scenario: Scenario, bhf: str, sales: int, at: datetime) -> None:
    key = f"demo:{bhf}"
    for item in CATALOG:
        scenario.add(
            [
                b.item(
                    TIN,
                    bhf,
                    f"{key}:item:{item.code}",
                    item_cd=item.code,
                    item_nm=item.name,
                    price=item.price,
                    tax_ty_cd=item.tax,
                )
            ]
        )
    _opening_stock(scenario, bhf, sales, at)
    credits = credit_notes_at(sales)
    for index in range(sales):
        scenario.add(
            b.sale_with_stock(
                TIN,
                bhf,
                f"{key}:sale:{index:06d}",
                sale_lines(index),
                trd_invc_no=f"{bhf}-{index:06d}",
                at=at,
            )
        )
        if index == int(sales * STALE_COUNT_AT):
            _stale_count(scenario, bhf, sales)
        if index == int(sales * BAD_SALE_AT):
            _bad_sale(scenario, bhf, at)
        if index in credits:
            original = credits[index]
            scenario.add(
                [
                    b.credit_note(
                        TIN,
                        bhf,
                        f"{key}:credit:{original:06d}",
                        f"{key}:sale:{original:06d}",
                        sale_lines(original),
                        trd_invc_no=f"{bhf}-CN{original:06d}",
                        at=at,
                    )
                ]
            )


def _opening_stock(scenario: Scenario, bhf: str, sales: int, at: datetime) -> None:
    key = f"demo:{bhf}:opening"
    qty = opening_qty(sales)
    lines = [b.SaleLine(i.code, i.name, qty, i.price, tax_ty_cd=i.tax) for i in CATALOG]
    scenario.add([b.stock_io(TIN, bhf, key, lines, sar_ty_cd="06", at=at)])
    for item in CATALOG:
        scenario.add(
            [
                b.stock_master(
                    TIN, bhf, f"{key}:master:{item.code}", item_cd=item.code, depends_on=[key]
                )
            ]
        )


def _stale_count(scenario: Scenario, bhf: str, sales: int) -> None:
    """More than the branch ever held: wrong whatever KRA's balance is by then."""
    item = CATALOG[0]
    record = b.stock_master(
        TIN,
        bhf,
        f"demo:{bhf}:stale-count:{item.code}",
        item_cd=item.code,
        rsd_qty=opening_qty(sales) + 7,
    )
    scenario.add([record], "dead")


def _bad_sale(scenario: Scenario, bhf: str, at: datetime) -> None:
    records = b.sale_with_stock(
        TIN, bhf, f"demo:{bhf}:bad-sale", [UNREGISTERED], trd_invc_no=f"{bhf}-BAD001", at=at
    )
    scenario.add(records[:1], "dead")
    scenario.add(records[1:], "blocked")
    # the operator's fix: register the item on the branch, with its opening stock
    item_key = f"demo:{bhf}:register:{UNREGISTERED.item_cd}"
    repair = [
        b.item(
            TIN,
            bhf,
            item_key,
            item_cd=UNREGISTERED.item_cd,
            item_nm=UNREGISTERED.item_nm,
            price=UNREGISTERED.prc,
            tax_ty_cd=UNREGISTERED.tax_ty_cd,
        ),
        b.stock_io(
            TIN,
            bhf,
            f"demo:{bhf}:register:{UNREGISTERED.item_cd}:opening",
            [b.SaleLine(UNREGISTERED.item_cd, UNREGISTERED.item_nm, Decimal(10), UNREGISTERED.prc)],
            sar_ty_cd="06",
            at=at,
            depends_on=[item_key],
        ),
    ]
    scenario.repair += repair
    scenario.replay_keys.append(str(records[0]["idempotency_key"]))
    for record in [*repair, *records]:
        scenario.expected_after_repair[record["kind"]] += 1
