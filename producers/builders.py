"""Build job envelopes for the common cases, with the right ``depends_on`` already set.

A sale of goods is really three jobs, in causal order: the sale, then its stock-out
(``insertStockIO`` type 11, same lines), then a ``saveStockMaster`` per item with the
remaining quantity. :func:`sale_with_stock` builds all three from one call, so a till cannot
forget the dependency that keeps a stock movement from reaching KRA before its sale.

Amounts are left out on purpose: the service computes them with the configured VAT scheme.
``pkg`` is filled by the host's ``pkg_rule`` (``Settings.body_rules().pkg_rule``): hosts
disagree on it for unpackaged lines, and enqueue refuses a ``pkg`` the rule does not expect.
:class:`ItemCodeAllocator` hands out item codes that follow the spec's structure, with a
running number per taxpayer kept in the outbox database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from schemas.body_rules import PkgRule, expected_pkg
from schemas.types import to_d8, to_d14

if TYPE_CHECKING:
    from producers.item_codes import ItemCodeAllocator

__all__ = [
    "ItemCodeAllocator",
    "SaleLine",
    "credit_note",
    "envelope",
    "item",
    "sale",
    "sale_with_stock",
    "stock_io",
    "stock_master",
]

#: Defaults for a finished good counted in units, without packaging.
DEFAULT_ITEM_CLASS = "5020230100"
DEFAULT_PKG_UNIT = "NT"
DEFAULT_QTY_UNIT = "NO"
DEFAULT_COUNTRY = "KE"


@dataclass(frozen=True, slots=True)
class SaleLine:
    item_cd: str
    item_nm: str
    qty: Decimal
    prc: Decimal
    tax_ty_cd: str = "B"
    item_cls_cd: str = DEFAULT_ITEM_CLASS
    pkg_unit_cd: str = DEFAULT_PKG_UNIT
    qty_unit_cd: str = DEFAULT_QTY_UNIT
    dc_rt: Decimal = Decimal("0")
    #: Number of packages; None: as the host's ``pkg_rule`` says.
    pkg: Decimal | None = None

    def packages(self, rule: PkgRule) -> Decimal:
        return self.pkg if self.pkg is not None else expected_pkg(rule, self.pkg_unit_cd, self.qty)


def envelope(
    kind: str,
    tin: str,
    bhf_id: str,
    key: str,
    payload: dict[str, Any],
    *,
    depends_on: Sequence[str] = (),
    original_key: str | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": kind,
        "tin": tin,
        "bhf_id": bhf_id,
        "idempotency_key": key,
        "payload": payload,
    }
    if depends_on:
        record["depends_on"] = list(depends_on)
    if original_key:
        record["original_key"] = original_key
    return record


def item(
    tin: str,
    bhf_id: str,
    key: str,
    *,
    item_cd: str,
    item_nm: str,
    price: Decimal,
    tax_ty_cd: str = "B",
    item_ty_cd: str = "2",
    item_cls_cd: str = DEFAULT_ITEM_CLASS,
    pkg_unit_cd: str = DEFAULT_PKG_UNIT,
    qty_unit_cd: str = DEFAULT_QTY_UNIT,
    orgn_nat_cd: str = DEFAULT_COUNTRY,
) -> dict[str, Any]:
    payload = {
        "itemCd": item_cd,
        "itemClsCd": item_cls_cd,
        "itemTyCd": item_ty_cd,
        "itemNm": item_nm,
        "orgnNatCd": orgn_nat_cd,
        "pkgUnitCd": pkg_unit_cd,
        "qtyUnitCd": qty_unit_cd,
        "taxTyCd": tax_ty_cd,
        "dftPrc": price,
        "isrcAplcbYn": "N",
        "useYn": "Y",
    }
    return envelope("item", tin, bhf_id, key, payload)


def _sale_lines(lines: Sequence[SaleLine], pkg_rule: PkgRule) -> list[dict[str, Any]]:
    return [
        {
            "itemSeq": seq,
            "itemClsCd": line.item_cls_cd,
            "itemCd": line.item_cd,
            "itemNm": line.item_nm,
            "pkgUnitCd": line.pkg_unit_cd,
            "pkg": line.packages(pkg_rule),
            "qtyUnitCd": line.qty_unit_cd,
            "qty": line.qty,
            "prc": line.prc,
            "dcRt": line.dc_rt,
            "taxTyCd": line.tax_ty_cd,
        }
        for seq, line in enumerate(lines, start=1)
    ]


def _stock_lines(lines: Sequence[SaleLine]) -> list[dict[str, Any]]:
    """Stock lines keep pkg = qty unless given: GavaConnect accepted it on stock IO, and
    ``pkg_rule`` is only known to apply to sales."""
    return [
        {
            "itemSeq": seq,
            "itemClsCd": line.item_cls_cd,
            "itemCd": line.item_cd,
            "itemNm": line.item_nm,
            "pkgUnitCd": line.pkg_unit_cd,
            "pkg": line.pkg if line.pkg is not None else line.qty,
            "qtyUnitCd": line.qty_unit_cd,
            "qty": line.qty,
            "prc": line.prc,
            "totDcAmt": Decimal("0"),
            "taxTyCd": line.tax_ty_cd,
        }
        for seq, line in enumerate(lines, start=1)
    ]


def sale(
    tin: str,
    bhf_id: str,
    key: str,
    lines: Sequence[SaleLine],
    *,
    trd_invc_no: str,
    at: datetime,
    pmt_ty_cd: str = "01",
    cust_tin: str | None = None,
    cust_nm: str | None = None,
    depends_on: Sequence[str] = (),
    pkg_rule: PkgRule = "qty",
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "trdInvcNo": trd_invc_no,
        "salesTyCd": "N",
        "rcptTyCd": "S",
        "pmtTyCd": pmt_ty_cd,
        "salesSttsCd": "02",
        "cfmDt": to_d14(at),
        "salesDt": to_d8(at),
        "prchrAcptcYn": "N",
        "receipt": {"rcptPbctDt": to_d14(at), "prchrAcptcYn": "N"},
        "itemList": _sale_lines(lines, pkg_rule),
    }
    if cust_tin:
        payload["custTin"] = cust_tin
        payload["receipt"]["custTin"] = cust_tin
    if cust_nm:
        payload["custNm"] = cust_nm
    return envelope("sale", tin, bhf_id, key, payload, depends_on=depends_on)


def credit_note(
    tin: str,
    bhf_id: str,
    key: str,
    original_key: str,
    lines: Sequence[SaleLine],
    *,
    trd_invc_no: str,
    at: datetime,
    reason: str = "06",
    cust_tin: str | None = None,
    pkg_rule: PkgRule = "qty",
) -> dict[str, Any]:
    """A credit note of ``original_key``; without ``cust_tin`` enqueue copies the sale's buyer."""
    record = sale(
        tin,
        bhf_id,
        key,
        lines,
        trd_invc_no=trd_invc_no,
        at=at,
        cust_tin=cust_tin,
        pkg_rule=pkg_rule,
    )
    record["kind"] = "credit_note"
    record["original_key"] = original_key
    record["payload"].update(rcptTyCd="R", rfdRsnCd=reason, rfdDt=to_d14(at))
    return record


def stock_io(
    tin: str,
    bhf_id: str,
    key: str,
    lines: Sequence[SaleLine],
    *,
    sar_ty_cd: str,
    at: datetime,
    depends_on: Sequence[str] = (),
    cust_tin: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "regTyCd": "A",
        "sarTyCd": sar_ty_cd,
        "ocrnDt": to_d8(at),
        "itemList": _stock_lines(lines),
    }
    if cust_tin:
        payload["custTin"] = cust_tin
    return envelope("stock_io", tin, bhf_id, key, payload, depends_on=depends_on)


def stock_master(
    tin: str,
    bhf_id: str,
    key: str,
    *,
    item_cd: str,
    depends_on: Sequence[str] = (),
    rsd_qty: Decimal | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"itemCd": item_cd}
    if rsd_qty is not None:
        payload["rsdQty"] = rsd_qty
    return envelope("stock_master", tin, bhf_id, key, payload, depends_on=depends_on)


def sale_with_stock(
    tin: str,
    bhf_id: str,
    key: str,
    lines: Sequence[SaleLine],
    *,
    trd_invc_no: str,
    at: datetime,
    depends_on: Sequence[str] = (),
    cust_tin: str | None = None,
    pkg_rule: PkgRule = "qty",
) -> list[dict[str, Any]]:
    """The sale, its stock-out (type 11) after it, and a stock master per item after that.

    ``rsdQty`` is left out: the service fills it from KRA's running balance at send time,
    which is the only value KRA accepts.
    """
    records = [
        sale(
            tin,
            bhf_id,
            key,
            lines,
            trd_invc_no=trd_invc_no,
            at=at,
            depends_on=depends_on,
            cust_tin=cust_tin,
            pkg_rule=pkg_rule,
        )
    ]
    goods = [line for line in lines]
    records.append(
        stock_io(
            tin,
            bhf_id,
            f"{key}:stock-out",
            goods,
            sar_ty_cd="11",
            at=at,
            depends_on=[key],
            cust_tin=cust_tin,
        )
    )
    for item_cd in dict.fromkeys(line.item_cd for line in goods):
        records.append(
            stock_master(
                tin,
                bhf_id,
                f"{key}:stock-master:{item_cd}",
                item_cd=item_cd,
                depends_on=[f"{key}:stock-out"],
            )
        )
    return records


def __getattr__(name: str) -> Any:
    """``builders.ItemCodeAllocator`` is imported on first use: it needs the outbox database
    (SQLAlchemy), which the till client, also a user of this module, does not install."""
    if name == "ItemCodeAllocator":
        from producers.item_codes import ItemCodeAllocator

        return ItemCodeAllocator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
