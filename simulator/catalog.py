"""Static reference data KRA would serve: code classes, item classes, notices.

Small but real subsets of the spec's code lists, enough for clients to cache and for the
simulator to answer lookups plausibly. Class 04 is built from the run's tax rates so
``selectCodeList`` and the amount validator never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

#: Every catalogue row is dated here; a ``lastReqDt`` at or after it gets 001 (nothing new).
CATALOGUE_DT = "20230101000000"

_TAX_NAMES = {"A": "Exempt", "B": "Standard VAT", "C": "Zero-rated", "D": "Non-VAT", "E": "Reduced"}

_CLASSES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "05": ("Country", [("KE", "Kenya"), ("UG", "Uganda"), ("TZ", "Tanzania"), ("CN", "China")]),
    "07": ("Payment Type", [
        ("01", "CASH"), ("02", "CREDIT"), ("03", "CASH/CREDIT"), ("04", "BANK CHECK"),
        ("05", "DEBIT&CREDIT CARD"), ("06", "MOBILE MONEY"), ("07", "OTHER"),
    ]),
    "10": ("Quantity Unit", [
        ("U", "Pieces/item"), ("NO", "Number"), ("KG", "Kilogram"), ("L", "Litre"),
        ("LTR", "Litre"), ("M", "Metre"), ("DZ", "Dozen"), ("SET", "Set"), ("4B", "Pair"),
    ]),
    "11": ("Transaction Progress", [
        ("01", "Wait for Approval"), ("02", "Approved"), ("03", "Cancel Requested"),
        ("04", "Canceled"), ("05", "Credit Note Generated"), ("06", "Transferred"),
    ]),
    "12": ("Stock I/O Type", [
        ("01", "Import"), ("02", "Purchase"), ("03", "Return"), ("04", "Stock Movement"),
        ("05", "Processing"), ("06", "Adjustment"), ("11", "Sale"), ("12", "Return"),
        ("13", "Stock Movement"), ("14", "Processing"), ("15", "Discarding"), ("16", "Adjustment"),
    ]),
    "14": ("Sales Type", [("N", "Normal"), ("C", "Copy"), ("P", "Proforma"), ("T", "Training")]),
    "17": ("Packing Unit", [
        ("NT", "Net"), ("OU", "Outer"), ("CT", "Carton"), ("BG", "Bag"), ("BX", "Box"),
        ("BA", "Barrel"), ("BE", "Bundle"),
    ]),
    "24": ("Item Type", [("1", "Raw Material"), ("2", "Finished Product"), ("3", "Service")]),
    "32": ("Refund Reason", [
        ("01", "Missing Quantity"), ("02", "Missing Data"), ("03", "Damaged"), ("04", "Wasted"),
        ("05", "Raw Material Shortage"), ("06", "Refund"),
    ]),
    "37": ("Sales Receipt Type", [("S", "Sale"), ("R", "Credit Note after Sale")]),
}  # fmt: skip

ITEM_CLASSES: list[dict[str, Any]] = [
    {"itemClsCd": cd, "itemClsNm": nm, "itemClsLvl": 4, "taxTyCd": tax, "mjrTgYn": "N",
     "useYn": "Y"}
    for cd, nm, tax in (
        ("5020230100", "Bottled water", "B"),
        ("5010150100", "Fresh fruit", "A"),
        ("5019150000", "Prepared foods", "B"),
        ("1510150600", "Diesel fuel", "E"),
        ("8011160100", "Consulting services", "B"),
        ("5121150000", "Medicines", "A"),
    )
]  # fmt: skip

NOTICES: list[dict[str, Any]] = [
    {"noticeNo": 1, "title": "OSCU simulator", "cont": "This is a local stand-in for KRA eTIMS.",
     "dtlUrl": "http://localhost/notice/1", "regrNm": "simulator", "regDt": CATALOGUE_DT},
]  # fmt: skip


def _rate_text(rate: Decimal) -> str:
    return f"{rate.quantize(Decimal('0.01'))}"


def code_classes(tax_rates: Mapping[str, Decimal]) -> list[dict[str, Any]]:
    """``data.clsList`` of ``selectCodeList``: class 04 from ``tax_rates`` plus the statics."""
    tax_rows = [
        (code, f"{_TAX_NAMES[code]}", _rate_text(rate)) for code, rate in sorted(tax_rates.items())
    ]
    classes = [_cls("04", "Taxation Type", tax_rows)]
    for cls_cd, (name, rows) in sorted(_CLASSES.items()):
        classes.append(_cls(cls_cd, name, [(cd, nm, None) for cd, nm in rows]))
    return sorted(classes, key=lambda row: str(row["cdCls"]))


def _cls(cls_cd: str, name: str, rows: Sequence[tuple[str, str, str | None]]) -> dict[str, Any]:
    return {
        "cdCls": cls_cd,
        "cdClsNm": name,
        "cdClsDesc": None,
        "useYn": "Y",
        "userDfnNm1": "Rate" if cls_cd == "04" else None,
        "userDfnNm2": None,
        "userDfnNm3": None,
        "dtlList": [
            {"cd": cd, "cdNm": nm, "cdDesc": None, "useYn": "Y", "srtOrd": order,
             "userDfnCd1": extra, "userDfnCd2": None, "userDfnCd3": None}
            for order, (cd, nm, extra) in enumerate(rows, start=1)
        ],
    }  # fmt: skip
