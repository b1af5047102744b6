"""VAT arithmetic for sale, purchase and stock bodies (docs/oscu.md, "VAT schemes").

Hosts disagree on what ``prc``, ``taxblAmt`` and ``totAmt`` mean, so the arithmetic is a
:class:`VatScheme` chosen in configuration; the simulator checks with the same code it would
fill with, so both sides agree by construction and the scheme is switched in one place.

Per line, for every scheme: ``splyAmt = round(qty * prc)``, ``dcAmt = round(splyAmt * dcRt
/ 100)`` (stock lines carry the discount as the amount ``totDcAmt``), ``base = splyAmt -
dcAmt``; then, with rate ``r`` of the line's tax type:

- inclusive: ``taxblAmt = base`` (gross), ``taxAmt = round(base * r / (100 + r))``,
  ``totAmt = taxblAmt``;
- split: ``taxblAmt = round(base * 100 / (100 + r))``, ``taxAmt = base - taxblAmt``,
  ``totAmt = taxblAmt + taxAmt``;
- exclusive: ``taxblAmt = base`` (net), ``taxAmt = round(base * r / 100)``,
  ``totAmt = taxblAmt + taxAmt``.

Rounding is half-up to the cent, on exact fractions (never floats). Header fields are sums of
the *rounded* lines, per tax type where the header has per-type fields.

Amounts are *expected* values computed from the inputs alone (``qty``, ``prc``, ``dcRt`` or
``totDcAmt``, ``taxTyCd`` and the configured rates), never from other amounts of the body:
so one wrong amount is reported at its own path and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from typing import Any

from schemas.codes import TaxType

__all__ = [
    "DEFAULT_AMOUNT_TOLERANCE",
    "DEFAULT_VAT_SCHEME",
    "AmountIssue",
    "VatScheme",
    "check_sale_amounts",
    "check_stock_io_amounts",
    "complete_sale_amounts",
    "complete_stock_io_amounts",
    "compute_line_amounts",
    "compute_sale_amounts",
    "compute_stock_io_amounts",
    "fill_sale_amounts",
    "fill_stock_io_amounts",
    "round_half_up",
]


class VatScheme(StrEnum):
    """The three amount conventions seen in the wild (§7.1)."""

    #: Spec samples / ``etims``: gross prices, ``taxblAmt`` gross, tax carved out of it.
    INCLUSIVE = "inclusive"
    #: GavaConnect's live validator: gross prices, ``taxblAmt`` net, ``taxAmt`` = gross - net.
    SPLIT = "split"
    #: Odoo / navari on etims-api: net prices, tax added on top.
    EXCLUSIVE = "exclusive"


#: The recommended scheme (docs/oscu.md, "VAT schemes"): the only scheme backed by server
#: error messages.
DEFAULT_VAT_SCHEME = VatScheme.SPLIT
#: Tolerance used by ``etims``' fake and Paybill's validator.
DEFAULT_AMOUNT_TOLERANCE = Decimal("0.01")

_SALE_LINE_FIELDS = ("splyAmt", "dcAmt", "taxblAmt", "taxAmt", "totAmt")
_STOCK_LINE_FIELDS = ("splyAmt", "taxblAmt", "taxAmt", "totAmt")
_TOTAL_FIELDS = ("totTaxblAmt", "totTaxAmt", "totAmt")

LineAmounts = dict[str, Decimal]
HeaderAmounts = dict[str, Decimal | int]


@dataclass(frozen=True)
class AmountIssue:
    """One amount that differs from what the scheme gives by more than the tolerance.

    ``path`` is dotted with 0-based line indexes (``itemList.0.taxblAmt``, ``taxblAmtB``);
    ``str()`` gives GavaConnect's wording, whose item numbers are 1-based.
    """

    path: str
    expected: Decimal
    found: Decimal

    def __str__(self) -> str:
        parts = self.path.split(".")
        if len(parts) == 3 and parts[0] == "itemList":
            where = f"{parts[2]} on item: {int(parts[1]) + 1}"
        else:
            where = self.path
        return f"Invalid {where}. Expected: {self.expected:.2f}, But Found: {self.found:.2f}"


def round_half_up(value: Fraction | Decimal) -> Decimal:
    """Round to the cent, halves away from zero, exactly (the result has 2 decimal places)."""
    return _cents(*value.as_integer_ratio())


def _cents(numerator: int, denominator: int) -> Decimal:
    """``numerator / denominator`` rounded half up to the cent, in integer arithmetic: the
    same exact result as with ``Fraction`` at a fraction of the cost (every line of every
    job is computed at enqueue and again at its first send)."""
    cents = (abs(numerator) * 200 + denominator) // (2 * denominator)
    return Decimal(-cents if numerator < 0 else cents).scaleb(-2)


def _times_ratio(amount: Decimal, numerator: int, denominator: int) -> Decimal:
    """``amount * numerator / denominator`` rounded to the cent."""
    an, ad = amount.as_integer_ratio()
    return _cents(an * numerator, ad * denominator)


def _split_base(base: Decimal, rate: Decimal, scheme: VatScheme) -> tuple[Decimal, ...]:
    rn, rd = rate.as_integer_ratio()  # rate = rn / rd percent
    if scheme is VatScheme.INCLUSIVE:  # tax = base * r / (100 + r)
        return base, _times_ratio(base, rn, 100 * rd + rn), base
    if scheme is VatScheme.SPLIT:  # taxable = base * 100 / (100 + r)
        taxable = _times_ratio(base, 100 * rd, 100 * rd + rn)
        return taxable, base - taxable, base
    taxable = base  # exclusive: tax = base * r / 100
    tax = _times_ratio(base, rn, 100 * rd)
    return taxable, tax, taxable + tax


def compute_line_amounts(
    qty: Decimal,
    prc: Decimal,
    rate: Decimal,
    scheme: VatScheme | str,
    *,
    dc_rt: Decimal = Decimal(0),
    dc_amt: Decimal | None = None,
) -> LineAmounts:
    """Amounts of one line: ``splyAmt``, ``dcAmt``, ``taxblAmt``, ``taxAmt``, ``totAmt``.

    ``dc_amt`` (a stock line's ``totDcAmt``) replaces the rate-based discount when given.
    """
    qn, qd = qty.as_integer_ratio()
    pn, pd = prc.as_integer_ratio()
    supply = _cents(qn * pn, qd * pd)
    if dc_amt is None:
        dn, dd = dc_rt.as_integer_ratio()
        discount = _times_ratio(supply, dn, 100 * dd)
    else:
        discount = dc_amt
    taxable, tax, total = _split_base(supply - discount, rate, VatScheme(scheme))
    return {
        "splyAmt": supply,
        "dcAmt": discount,
        "taxblAmt": taxable,
        "taxAmt": tax,
        "totAmt": total,
    }


def compute_sale_amounts(
    lines: Sequence[Mapping[str, Any]], scheme: VatScheme | str, rates: Mapping[str, Decimal]
) -> tuple[list[LineAmounts], HeaderAmounts]:
    """Line amounts and header of a sale or purchase body's ``itemList``.

    Lines are wire-shaped mappings; only ``qty``, ``prc``, ``dcRt`` (0 when absent) and
    ``taxTyCd`` are read. The header has all 15 per-type fields, totals and ``totItemCnt``.
    """
    table = _rate_table(rates)
    computed: list[LineAmounts] = []
    taxable = dict.fromkeys(TaxType, Decimal("0.00"))
    tax = dict.fromkeys(TaxType, Decimal("0.00"))
    for index, line in enumerate(lines):
        tax_type = _tax_type(line, index)
        amounts = compute_line_amounts(
            _decimal(line.get("qty"), f"itemList.{index}.qty"),
            _decimal(line.get("prc"), f"itemList.{index}.prc"),
            table[tax_type],
            scheme,
            dc_rt=_decimal(line.get("dcRt"), f"itemList.{index}.dcRt", missing=Decimal(0)),
        )
        taxable[tax_type] += amounts["taxblAmt"]
        tax[tax_type] += amounts["taxAmt"]
        computed.append(amounts)
    header: HeaderAmounts = {}
    for tax_type in TaxType:
        header[f"taxblAmt{tax_type}"] = taxable[tax_type]
        header[f"taxAmt{tax_type}"] = tax[tax_type]
        header[f"taxRt{tax_type}"] = table[tax_type]
    header.update(_totals(computed))
    return computed, header


def compute_stock_io_amounts(
    lines: Sequence[Mapping[str, Any]], scheme: VatScheme | str, rates: Mapping[str, Decimal]
) -> tuple[list[LineAmounts], HeaderAmounts]:
    """Like :func:`compute_sale_amounts` for ``insertStockIO``: lines give ``totDcAmt`` (an
    amount, 0 when absent) instead of a rate; the header has only totals and ``totItemCnt``."""
    table = _rate_table(rates, required=())
    computed: list[LineAmounts] = []
    for index, line in enumerate(lines):
        tax_type = _tax_type(line, index)
        if tax_type not in table:
            raise ValueError(f"itemList.{index}.taxTyCd: no tax rate configured for {tax_type}")
        amounts = compute_line_amounts(
            _decimal(line.get("qty"), f"itemList.{index}.qty"),
            _decimal(line.get("prc"), f"itemList.{index}.prc"),
            table[tax_type],
            scheme,
            dc_amt=_decimal(
                line.get("totDcAmt"), f"itemList.{index}.totDcAmt", missing=Decimal("0.00")
            ),
        )
        amounts["totDcAmt"] = amounts.pop("dcAmt")
        computed.append(amounts)
    return computed, _totals(computed)


def fill_sale_amounts(
    body: Mapping[str, Any], scheme: VatScheme | str, rates: Mapping[str, Decimal]
) -> dict[str, Any]:
    """A new sale/purchase body in which every amount the caller left out (missing or
    ``None``) is computed; amounts present are kept as they are. ``dcRt`` defaults to 0.

    Filled values are ``Decimal``: validate the result with the request model and dump it
    with ``mode="json"`` to get JSON numbers.
    """
    return complete_sale_amounts(body, scheme, rates)[0]


def fill_stock_io_amounts(
    body: Mapping[str, Any], scheme: VatScheme | str, rates: Mapping[str, Decimal]
) -> dict[str, Any]:
    """:func:`fill_sale_amounts` for ``insertStockIO`` bodies (``totDcAmt`` defaults to 0)."""
    return complete_stock_io_amounts(body, scheme, rates)[0]


def complete_sale_amounts(
    body: Mapping[str, Any],
    scheme: VatScheme | str,
    rates: Mapping[str, Decimal],
    tolerance: Decimal = DEFAULT_AMOUNT_TOLERANCE,
) -> tuple[dict[str, Any], list[AmountIssue]]:
    """:func:`fill_sale_amounts` and :func:`check_sale_amounts` with one computation: the
    filled body, and the amounts the caller gave that are off. Every sale is completed at
    enqueue and again at its first send, so computing the amounts once matters."""
    lines = body.get("itemList") or []
    computed, header = compute_sale_amounts(lines, scheme, rates)
    issues = _issues(body, lines, computed, header, _SALE_LINE_FIELDS, tolerance)
    filled = _copy_body(body)
    for line, amounts in zip(filled.get("itemList") or [], computed, strict=True):
        _fill(line, {"dcRt": Decimal(0), **amounts})
    _fill(filled, header)
    return filled, issues


def complete_stock_io_amounts(
    body: Mapping[str, Any],
    scheme: VatScheme | str,
    rates: Mapping[str, Decimal],
    tolerance: Decimal = DEFAULT_AMOUNT_TOLERANCE,
) -> tuple[dict[str, Any], list[AmountIssue]]:
    """:func:`complete_sale_amounts` for ``insertStockIO`` bodies."""
    lines = body.get("itemList") or []
    computed, header = compute_stock_io_amounts(lines, scheme, rates)
    issues = _issues(body, lines, computed, header, _STOCK_LINE_FIELDS, tolerance)
    filled = _copy_body(body)
    for line, amounts in zip(filled.get("itemList") or [], computed, strict=True):
        _fill(line, amounts)
    _fill(filled, header)
    return filled, issues


def _copy_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy deep enough to fill: the body and its lines are new dicts, values are shared
    (they are numbers and strings, never changed in place)."""
    filled = dict(body)
    if isinstance(filled.get("itemList"), list):
        filled["itemList"] = [dict(line) for line in filled["itemList"]]
    return filled


def check_sale_amounts(
    body: Mapping[str, Any],
    scheme: VatScheme | str,
    rates: Mapping[str, Decimal],
    tolerance: Decimal = DEFAULT_AMOUNT_TOLERANCE,
) -> list[AmountIssue]:
    """Every amount of a sale/purchase body that is off by more than ``tolerance``: line
    ``splyAmt``/``dcAmt``/``taxblAmt``/``taxAmt``/``totAmt``, the 15 per-type header fields
    (``taxRtX`` against the configured rate) and the totals.

    Expects a body that passed the request model: absent amounts are the model's to report
    and are skipped here; absent inputs (``qty``, ``prc``, ``taxTyCd``) raise ``ValueError``.
    """
    lines = body.get("itemList") or []
    computed, header = compute_sale_amounts(lines, scheme, rates)
    return _issues(body, lines, computed, header, _SALE_LINE_FIELDS, tolerance)


def check_stock_io_amounts(
    body: Mapping[str, Any],
    scheme: VatScheme | str,
    rates: Mapping[str, Decimal],
    tolerance: Decimal = DEFAULT_AMOUNT_TOLERANCE,
) -> list[AmountIssue]:
    """:func:`check_sale_amounts` for ``insertStockIO``: line ``splyAmt``/``taxblAmt``/
    ``taxAmt``/``totAmt`` and header ``totTaxblAmt``/``totTaxAmt``/``totAmt``."""
    lines = body.get("itemList") or []
    computed, header = compute_stock_io_amounts(lines, scheme, rates)
    return _issues(body, lines, computed, header, _STOCK_LINE_FIELDS, tolerance)


def _issues(
    body: Mapping[str, Any],
    lines: Sequence[Mapping[str, Any]],
    computed: Sequence[LineAmounts],
    header: HeaderAmounts,
    line_fields: Sequence[str],
    tolerance: Decimal,
) -> list[AmountIssue]:
    issues: list[AmountIssue] = []
    for index, (line, amounts) in enumerate(zip(lines, computed, strict=True)):
        for field in line_fields:
            issue = _compare(
                f"itemList.{index}.{field}", amounts[field], line.get(field), tolerance
            )
            if issue is not None:
                issues.append(issue)
    for field, expected in header.items():
        if field == "totItemCnt":
            continue  # a count, checked by the request model
        issue = _compare(field, Decimal(expected), body.get(field), tolerance)
        if issue is not None:
            issues.append(issue)
    return issues


def _compare(path: str, expected: Decimal, raw: Any, tolerance: Decimal) -> AmountIssue | None:
    if raw is None:
        return None
    found = _decimal(raw, path)
    if abs(found - expected) > tolerance:
        return AmountIssue(path=path, expected=expected, found=found)
    return None


def _totals(lines: Sequence[LineAmounts]) -> HeaderAmounts:
    """Header totals as sums of the rounded lines (§7.2)."""
    zero = Decimal("0.00")
    return {
        "totTaxblAmt": sum((line["taxblAmt"] for line in lines), zero),
        "totTaxAmt": sum((line["taxAmt"] for line in lines), zero),
        "totAmt": sum((line["totAmt"] for line in lines), zero),
        "totItemCnt": len(lines),
    }


def _fill(target: dict[str, Any], values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if target.get(key) is None:
            target[key] = value


def _rate_table(
    rates: Mapping[str, Decimal], required: Sequence[TaxType] = tuple(TaxType)
) -> dict[TaxType, Decimal]:
    """Rates by tax type; a sale header needs all five (``taxRtA``..``taxRtE``)."""
    table: dict[TaxType, Decimal] = {}
    for tax_type in TaxType:
        if tax_type.value in rates:
            table[tax_type] = _decimal(rates[tax_type.value], f"rates.{tax_type}")
        elif tax_type in required:
            raise ValueError(f"no tax rate configured for tax type {tax_type}")
    return table


def _tax_type(line: Mapping[str, Any], index: int) -> TaxType:
    raw = line.get("taxTyCd")
    try:
        return TaxType(str(raw))
    except ValueError:
        raise ValueError(f"itemList.{index}.taxTyCd: unknown tax type {raw!r}") from None


def _decimal(value: Any, path: str, *, missing: Decimal | None = None) -> Decimal:
    """Read a wire number exactly (floats via their shortest repr, as JSON wrote them)."""
    if value is None and missing is not None:
        return missing
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{path}: not a number: {value!r}") from None
    else:
        raise ValueError(f"{path}: expected a number, got {value!r}")
    if not number.is_finite():
        raise ValueError(f"{path}: not a finite number")
    exponent = int(number.as_tuple().exponent)  # finite here, so an int
    if number and not (-_MAX_PLACES <= exponent and number.adjusted() < _MAX_DIGITS):
        # Exact arithmetic on 1e999999 takes the CPU for minutes: refuse before computing.
        raise ValueError(f"{path}: out of range: {value!r}")
    return number


#: Largest integer digits and decimal places an amount or quantity may have here (OSCU's own
#: fields allow far fewer; the request models say exactly how many).
_MAX_DIGITS = 15
_MAX_PLACES = 15
