"""Bulk import from CSV: items, and simple single-line sales (``etims-relay enqueue FILE.csv``).

The kind of file is told by its header: a ``trd_invc_no`` column means sales, otherwise
``item_cd``, ``item_nm`` and ``price`` mean items. Columns (header names, any order):

items   required  tin, bhf_id, idempotency_key, item_cd, item_nm, price
        optional  tax_ty_cd (B), item_ty_cd (2), item_cls_cd (5020230100)
sales   required  tin, bhf_id, idempotency_key, trd_invc_no, date, item_cd, item_nm, qty,
                  price
                  (date in Kenyan time: YYYY-MM-DD HH:MM:SS, YYYY-MM-DD or YYYYMMDDhhmmss;
                  required so that importing the same file twice is idempotent)
        optional
                  tax_ty_cd (B), pmt_ty_cd (01), cust_tin, cust_nm, item_cls_cd,
                  with_stock (Y/N, default N: also enqueue the stock-out and stock master),
                  depends_on (idempotency keys separated by spaces)

Amounts are computed by the service (VAT scheme from settings). Validation is the same as
``enqueue``: all-or-nothing, and every error reads ``line N: column: message`` (line 1 is
the header).
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from producers import builders as b
from schemas.body_rules import PkgRule

__all__ = ["CsvBatch", "CsvError", "parse_csv"]

#: CSV dates carry no zone: they are read as Kenyan time, as KRA's own dates are.
EAT = timezone(timedelta(hours=3), "EAT")

ITEM_REQUIRED = ("tin", "bhf_id", "idempotency_key", "item_cd", "item_nm", "price")
ITEM_OPTIONAL = ("tax_ty_cd", "item_ty_cd", "item_cls_cd")
SALE_REQUIRED = (
    "tin",
    "bhf_id",
    "idempotency_key",
    "trd_invc_no",
    "date",
    "item_cd",
    "item_nm",
    "qty",
    "price",
)
SALE_OPTIONAL = (
    "tax_ty_cd",
    "pmt_ty_cd",
    "cust_tin",
    "cust_nm",
    "item_cls_cd",
    "with_stock",
    "depends_on",
)

#: Payload paths (as enqueue reports them) back to the CSV column that fed them.
_COLUMNS = {
    "payload.itemCd": "item_cd",
    "payload.itemNm": "item_nm",
    "payload.dftPrc": "price",
    "payload.taxTyCd": "tax_ty_cd",
    "payload.itemTyCd": "item_ty_cd",
    "payload.itemClsCd": "item_cls_cd",
    "payload.trdInvcNo": "trd_invc_no",
    "payload.pmtTyCd": "pmt_ty_cd",
    "payload.custTin": "cust_tin",
    "payload.custNm": "cust_nm",
    "payload.cfmDt": "date",
    "payload.salesDt": "date",
    "payload.ocrnDt": "date",
    "payload.itemList.itemCd": "item_cd",
    "payload.itemList.itemNm": "item_nm",
    "payload.itemList.qty": "qty",
    "payload.itemList.pkg": "qty",
    "payload.itemList.prc": "price",
    "payload.itemList.taxTyCd": "tax_ty_cd",
    "payload.itemList.itemClsCd": "item_cls_cd",
    "depends_on": "depends_on",
}


@dataclass(frozen=True, slots=True)
class CsvError:
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class CsvBatch:
    """Envelopes built from a CSV file, each with the line it came from."""

    records: list[dict[str, Any]]
    lines: list[int]
    errors: list[CsvError]

    @staticmethod
    def column_for(path: str) -> str:
        """The CSV column an enqueue error path refers to (the path itself if none)."""
        parts = path.split(".")
        if len(parts) > 3 and parts[:2] == ["payload", "itemList"] and parts[2].isdigit():
            path = ".".join([*parts[:2], *parts[3:]])
        if path.startswith("depends_on."):
            path = "depends_on"
        return _COLUMNS.get(path, path)


def parse_csv(text: str, *, pkg_rule: PkgRule = "qty") -> CsvBatch:
    """Build envelopes from CSV text; problems are collected, not raised. Sale lines get
    ``pkg`` by the host's ``pkg_rule`` (the CSV has no pkg column)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    build, required, optional = _kind(header, pkg_rule)
    errors = [
        CsvError(1, "header", message) for message in _header_errors(header, required, optional)
    ]
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    if errors or build is None:
        return CsvBatch(records, lines, errors)
    start = reader.line_num + 1
    for row in reader:
        line, start = start, reader.line_num + 1
        cells = {k: (v or "").strip() for k, v in row.items() if k is not None}
        if not any(cells.values()):
            continue
        if None in row:
            errors.append(CsvError(line, "(row)", "more cells than header columns"))
            continue
        missing = [c for c in required if not cells.get(c)]
        if missing:
            errors += [CsvError(line, c, "required") for c in missing]
            continue
        try:
            built = build(cells)
        except _CellError as exc:
            errors.append(CsvError(line, exc.column, exc.message))
            continue
        records += built
        lines += [line] * len(built)
    return CsvBatch(records, lines, errors)


class _CellError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"{column}: {message}")
        self.column, self.message = column, message


Builder = Callable[[dict[str, str]], list[dict[str, Any]]]


def _kind(
    header: list[str], pkg_rule: PkgRule
) -> tuple[Builder | None, tuple[str, ...], tuple[str, ...]]:
    if "trd_invc_no" in header:
        return functools.partial(_sale, pkg_rule=pkg_rule), SALE_REQUIRED, SALE_OPTIONAL
    if {"item_cd", "item_nm", "price"} <= set(header):
        return _item, ITEM_REQUIRED, ITEM_OPTIONAL
    return None, (), ()


def _header_errors(
    header: list[str], required: tuple[str, ...], optional: tuple[str, ...]
) -> list[str]:
    if not required:
        return [
            "not an items file (item_cd, item_nm, price) nor a sales file (trd_invc_no, ...); "
            "see docs/producers.md for the columns"
        ]
    problems = [f"missing column {c}" for c in required if c not in header]
    problems += [f"unknown column {c}" for c in header if c not in required + optional]
    if len(set(header)) != len(header):
        problems.append("a column appears twice")
    return problems


def _decimal(cells: dict[str, str], column: str) -> Decimal:
    try:
        value = Decimal(cells[column].replace(",", ""))
    except InvalidOperation:
        raise _CellError(column, f"not a number: {cells[column]!r}") from None
    if not value.is_finite():
        raise _CellError(column, "not a finite number")
    return value


def _item(cells: dict[str, str]) -> list[dict[str, Any]]:
    record = b.item(
        cells["tin"],
        cells["bhf_id"],
        cells["idempotency_key"],
        item_cd=cells["item_cd"],
        item_nm=cells["item_nm"],
        price=_decimal(cells, "price"),
        tax_ty_cd=cells.get("tax_ty_cd") or "B",
        item_ty_cd=cells.get("item_ty_cd") or "2",
        item_cls_cd=cells.get("item_cls_cd") or b.DEFAULT_ITEM_CLASS,
    )
    return [record]


def _sale(cells: dict[str, str], *, pkg_rule: PkgRule) -> list[dict[str, Any]]:
    line = b.SaleLine(
        cells["item_cd"],
        cells["item_nm"],
        _decimal(cells, "qty"),
        _decimal(cells, "price"),
        tax_ty_cd=cells.get("tax_ty_cd") or "B",
        item_cls_cd=cells.get("item_cls_cd") or b.DEFAULT_ITEM_CLASS,
    )
    at = _date(cells["date"])
    depends_on = (cells.get("depends_on") or "").split()
    with_stock = (cells.get("with_stock") or "N").upper()
    if with_stock not in ("Y", "N"):
        raise _CellError("with_stock", "must be Y or N")
    common: dict[str, Any] = {
        "trd_invc_no": cells["trd_invc_no"],
        "at": at,
        "depends_on": depends_on,
        "cust_tin": cells.get("cust_tin") or None,
        "pkg_rule": pkg_rule,
    }
    tin, bhf, key = cells["tin"], cells["bhf_id"], cells["idempotency_key"]
    if with_stock == "Y":
        return b.sale_with_stock(tin, bhf, key, [line], **common)
    record = b.sale(
        tin,
        bhf,
        key,
        [line],
        pmt_ty_cd=cells.get("pmt_ty_cd") or "01",
        cust_nm=cells.get("cust_nm") or None,
        **common,
    )
    return [record]


def _date(value: str) -> datetime:
    for layout in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%Y%m%d%H%M%S"):
        try:
            return datetime.strptime(value, layout).replace(tzinfo=EAT)
        except ValueError:
            continue
    raise _CellError("date", f"not a date: {value!r} (use YYYY-MM-DD HH:MM:SS)")
