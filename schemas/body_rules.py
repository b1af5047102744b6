"""Body rules that differ by OSCU host: what one host refuses and another accepted.

KRA's two front doors judge the same body differently (docs/oscu.md, "Body rules that differ
by host"). Each rule is a switch in :class:`BodyRules`; :meth:`BodyRules.for_flavour` gives the
defaults of a host flavour, and settings may override any one of them. The functions here are
pure: they read a payload (or a validated body) and return ``(field path, message)`` pairs, so
every entry point (CLI, HTTP intake, CSV import, till) refuses the same record the same way.

- ``item_code_structure``: ``itemCd`` = country (2 letters) + item type (1-3) + packaging unit
  (2) + quantity unit (2) + running number (7 digits), e.g. ``KE2NTBA0000012``, and the prefix
  agrees with the record's own ``orgnNatCd``/``itemTyCd``/``pkgUnitCd``/``qtyUnitCd``.
- ``pkg_rule``: what ``pkg`` must be on an unpackaged sale line (``pkgUnitCd`` NT): ``qty``
  (the spec's samples) or ``one_for_unpackaged`` (GavaConnect: "Expected: 1, Found: 2").
- ``no_service_stock``: a service (``itemTyCd`` 3) has no stock, so it is never in a stock
  movement or a stock master.
- ``credit_note_buyer``: a credit note carries its original sale's buyer PIN ("KRA only
  accepts credit notes with matching PINs"); a missing PIN or name is copied from the sale.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

__all__ = [
    "FLAVOURS",
    "ITEM_CODE_EXAMPLE",
    "SERVICE_ITEM_TYPE",
    "UNPACKAGED_UNITS",
    "BodyRules",
    "Flavour",
    "ItemCode",
    "PkgRule",
    "buyer_pin",
    "credit_note_buyer",
    "expected_pkg",
    "item_code",
    "item_code_errors",
    "item_types_in",
    "pkg_errors",
    "service_stock_errors",
    "stock_item_codes",
]

Flavour = Literal["etims-api", "gavaconnect"]
PkgRule = Literal["qty", "one_for_unpackaged"]

FLAVOURS: tuple[Flavour, ...] = ("etims-api", "gavaconnect")

#: Packaging units that mean "no packaging": the lines ``pkg_rule`` speaks about.
UNPACKAGED_UNITS = frozenset({"NT"})
#: Product type [24] ``3``: a service, which has no stock.
SERVICE_ITEM_TYPE = "3"
ITEM_CODE_EXAMPLE = "KE2NTBA0000012"

_ITEM_CODE = re.compile(
    r"^(?P<country>[A-Z]{2})(?P<item_type>[1-3])(?P<pkg_unit>[A-Z0-9]{2})"
    r"(?P<qty_unit>[A-Z0-9]{2})(?P<number>[0-9]{7})$"
)
_STRUCTURE = (
    "must be country (2 letters) + item type (1-3) + packaging unit (2) + quantity unit (2) "
    f"+ a 7-digit running number, e.g. {ITEM_CODE_EXAMPLE}"
)
_STOCK_KINDS = ("stock_io", "stock_master")
#: The evidence for ``pkg`` (GavaConnect "Expected: 1, Found: 2") is a sale; stock IO with
#: pkg = qty was accepted there, so stock lines are not checked.
_PKG_KINDS = ("sale", "credit_note")


@dataclass(frozen=True, slots=True)
class BodyRules:
    """Which host-specific body rules are enforced at enqueue (defaults: the etims-api host)."""

    #: itemCd must follow the spec's structure and agree with the record's own codes.
    item_code_structure: bool = False
    #: pkg on an unpackaged (NT) line: equal to qty, or 1.
    pkg_rule: PkgRule = "qty"
    #: A service item (itemTyCd 3) is refused in stock_io and stock_master jobs.
    no_service_stock: bool = True
    #: A credit note's buyer PIN must match its original's; a missing PIN/name is copied.
    credit_note_buyer: bool = True

    @classmethod
    def for_flavour(cls, flavour: Flavour, **overrides: Any) -> BodyRules:
        """The host's defaults; ``None`` overrides mean "as the flavour says"."""
        base = _FLAVOUR_DEFAULTS[flavour]
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


_FLAVOUR_DEFAULTS: dict[str, BodyRules] = {
    # Odoo's arbitrary item codes and pkg = qty were accepted on etims-api.
    "etims-api": BodyRules(),
    # GavaConnect checks the itemCd prefix and its running number, and wanted pkg 1 on NT.
    "gavaconnect": BodyRules(item_code_structure=True, pkg_rule="one_for_unpackaged"),
}


@dataclass(frozen=True, slots=True)
class ItemCode:
    """The parts of a conforming ``itemCd``."""

    country: str
    item_type: str
    pkg_unit: str
    qty_unit: str
    number: int


def item_code(value: Any) -> ItemCode | None:
    """Parse a conforming ``itemCd``; ``None`` when it does not follow the structure."""
    match = _ITEM_CODE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    return ItemCode(
        match["country"],
        match["item_type"],
        match["pkg_unit"],
        match["qty_unit"],
        int(match["number"]),
    )


# --------------------------------------------------------------------------- itemCd


def item_code_errors(
    kind: str, payload: Mapping[str, Any], rules: BodyRules
) -> list[tuple[str, str]]:
    """Structure and agreement of every ``itemCd`` in one payload (paths from the payload)."""
    if not rules.item_code_structure:
        return []
    if kind == "item":
        agree = {
            "orgnNatCd": "country",
            "itemTyCd": "item_type",
            "pkgUnitCd": "pkg_unit",
            "qtyUnitCd": "qty_unit",
        }
        return _code_errors("itemCd", payload, agree)
    if kind == "stock_master":
        return _code_errors("itemCd", payload, {})
    errors: list[tuple[str, str]] = []
    for index, line in _lines(payload):
        if kind == "stock_io" and line.get("itemCd") is None:
            continue  # optional on stock lines
        agree = {"pkgUnitCd": "pkg_unit", "qtyUnitCd": "qty_unit"}
        errors += _code_errors(f"itemList.{index}.itemCd", line, agree)
    return errors


def _code_errors(
    path: str, record: Mapping[str, Any], agree: Mapping[str, str]
) -> list[tuple[str, str]]:
    code = record.get("itemCd")
    parts = item_code(code)
    if parts is None:
        return [(path, f"{code!r} {_STRUCTURE}")]
    errors = []
    for field, part in agree.items():
        own = record.get(field)
        embedded = getattr(parts, part)
        if own is None or str(own) == embedded:
            continue
        message = f"the itemCd prefix says {embedded!r} but {field} is {own!r}"
        if field in ("pkgUnitCd", "qtyUnitCd") and len(str(own)) != 2:
            message += (
                f"; a {len(str(own))}-character unit cannot be embedded in the prefix on this"
                " host: use a 2-character unit (e.g. NO for pieces)"
            )
        errors.append((path, message))
    return errors


# --------------------------------------------------------------------------- pkg


def expected_pkg(rule: PkgRule, pkg_unit_cd: str, qty: Decimal) -> Decimal:
    """The ``pkg`` a line should carry under ``rule`` (packaged lines: one per quantity)."""
    if rule == "one_for_unpackaged" and pkg_unit_cd in UNPACKAGED_UNITS:
        return Decimal(1)
    return qty


def pkg_errors(kind: str, body: Mapping[str, Any], rules: BodyRules) -> list[tuple[str, str]]:
    """``pkg`` of unpackaged lines against ``pkg_rule`` (only NT lines: a carton's count of
    packages cannot be derived from its quantity)."""
    if kind not in _PKG_KINDS:
        return []
    errors: list[tuple[str, str]] = []
    for index, line in _lines(body):
        unit = line.get("pkgUnitCd")
        if unit not in UNPACKAGED_UNITS:
            continue
        try:
            qty, pkg = Decimal(str(line.get("qty"))), Decimal(str(line.get("pkg")))
        except InvalidOperation:
            continue  # the request model reports malformed numbers
        expected = expected_pkg(rules.pkg_rule, str(unit), qty)
        if pkg != expected:
            why = "1 package" if rules.pkg_rule == "one_for_unpackaged" else "pkg = qty"
            errors.append(
                (
                    f"itemList.{index}.pkg",
                    f"expected {_plain(expected)} ({why} for pkgUnitCd {unit} on this host),"
                    f" found {_plain(pkg)}",
                )
            )
    return errors


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


# --------------------------------------------------------------------------- services


def stock_item_codes(kind: str, payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(path, itemCd)`` of every item a stock job moves or reports."""
    if kind == "stock_master":
        code = payload.get("itemCd")
        return [("itemCd", code)] if isinstance(code, str) else []
    if kind == "stock_io":
        return [
            (f"itemList.{index}.itemCd", line["itemCd"])
            for index, line in _lines(payload)
            if isinstance(line.get("itemCd"), str)
        ]
    return []


def item_types_in(kind: str, payload: Mapping[str, Any]) -> dict[str, str]:
    """``{itemCd: itemTyCd}`` an item payload declares (empty for other kinds)."""
    code, item_type = payload.get("itemCd"), payload.get("itemTyCd")
    if kind == "item" and isinstance(code, str) and item_type is not None:
        return {code: str(item_type)}
    return {}


def service_stock_errors(
    kind: str,
    payload: Mapping[str, Any],
    rules: BodyRules,
    known_types: Mapping[str, str],
    source: str,
) -> list[tuple[str, str]]:
    """Refuse a service item in a stock job. ``known_types`` come from item records (named by
    ``source``); with the structure rule on, a conforming code's prefix tells the rest."""
    if not rules.no_service_stock or kind not in _STOCK_KINDS:
        return []
    errors = []
    for path, code in stock_item_codes(kind, payload):
        item_type, said_by = known_types.get(code), source
        if item_type is None and rules.item_code_structure:
            parts = item_code(code)
            item_type, said_by = (parts.item_type if parts else None), "its itemCd prefix"
        if item_type == SERVICE_ITEM_TYPE:
            errors.append(
                (
                    path,
                    f"item {code} is a service (itemTyCd 3, from {said_by}): services carry no"
                    " stock, so they are never in stock movements or stock masters",
                )
            )
    return errors


# --------------------------------------------------------------------------- credit notes


def buyer_pin(payload: Mapping[str, Any]) -> str | None:
    """The buyer PIN a sale carries (header, else receipt)."""
    receipt = payload.get("receipt")
    pin = payload.get("custTin")
    if pin is None and isinstance(receipt, Mapping):
        pin = receipt.get("custTin")
    return None if pin is None else str(pin)


def credit_note_buyer(
    payload: Mapping[str, Any], original: Mapping[str, Any], rules: BodyRules
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The credit note with its original's buyer copied in where missing, and the paths that
    carry a different PIN ("KRA only accepts credit notes with matching PINs")."""
    completed = dict(payload)
    if not rules.credit_note_buyer:
        return completed, []
    expected = buyer_pin(original)
    receipt = payload.get("receipt")
    receipt = dict(receipt) if isinstance(receipt, Mapping) else None
    errors = []
    header, printed = payload.get("custTin"), _pin(receipt)
    for path, value in (("custTin", header), ("receipt.custTin", printed)):
        if path == "receipt.custTin" and header is not None and printed == header:
            continue  # one wrong PIN, reported once (at the header)
        if value is not None and str(value) != expected:
            said = (
                f"the original sale's buyer PIN is {expected}"
                if expected
                else "the original sale has no buyer PIN"
            )
            errors.append(
                (path, f"KRA only accepts credit notes with matching PINs: {said}, found {value}")
            )
    if errors:
        return completed, errors
    if expected is not None:
        completed.setdefault("custTin", expected)
        if receipt is not None:
            receipt.setdefault("custTin", expected)
    if original.get("custNm") is not None:
        completed.setdefault("custNm", original["custNm"])
    if receipt is not None:
        completed["receipt"] = receipt
    return completed, []


def _pin(receipt: Mapping[str, Any] | None) -> Any:
    return None if receipt is None else receipt.get("custTin")


def _lines(body: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    lines = body.get("itemList")
    if not isinstance(lines, list):
        return []
    return [(index, line) for index, line in enumerate(lines) if isinstance(line, Mapping)]
