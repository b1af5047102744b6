"""Which amounts KRA expects on a sale or stock movement, under each VAT scheme.

Written from the spec's amount rules (docs/oscu.md, "VAT schemes") apart from ``schemas.vat``
on purpose (see :mod:`simulator.fields`): the relay fills amounts with ``schemas.vat``, the
simulator checks them with this module, so a misreading on either side shows up as a refused
job.

Per line, with the line's tax rate ``r`` (percent / 100) and every result rounded half up to
the cent:

- ``splyAmt = qty * prc``; a sale line's discount ``dcAmt = splyAmt * dcRt / 100``; a stock
  line gives its discount as the amount ``totDcAmt``. ``base = splyAmt - discount``.
- split (GavaConnect's validator): ``base`` is gross; ``taxblAmt = base / (1 + r)`` (net),
  ``taxAmt = base - taxblAmt``, ``totAmt = taxblAmt + taxAmt``.
- inclusive (the spec's samples): ``taxblAmt = base`` (gross), ``taxAmt = base * r / (1 + r)``,
  ``totAmt = base``.
- exclusive (Odoo's net prices): ``taxblAmt = base`` (net), ``taxAmt = base * r``,
  ``totAmt = taxblAmt + taxAmt``.

A sale header has, per tax type X, ``taxblAmtX``/``taxAmtX`` (sums of its lines) and ``taxRtX``
(the configured rate); both documents have ``totTaxblAmt``, ``totTaxAmt`` and ``totAmt``, sums
of the lines. Expected values come from ``qty``, ``prc``, the discount and ``taxTyCd`` only,
so a wrong amount is reported where it is, not also in every sum built on it. Amounts within
one cent of the expected value pass (the tolerance of ``etims``' fake and Paybill's validator).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from simulator.fields import wire_decimal

__all__ = ["TOLERANCE", "amount_problems", "expected_amounts", "line_amounts"]

TOLERANCE = Decimal("0.01")
_CENT = Decimal("0.01")
_HUNDRED = Decimal(100)
TAX_TYPES = "ABCDE"


def cents(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def line_amounts(
    qty: Decimal, prc: Decimal, rate_percent: Decimal, scheme: str, discount: Decimal
) -> dict[str, Decimal]:
    """``splyAmt``, ``taxblAmt``, ``taxAmt``, ``totAmt`` of one line; ``discount`` is the
    discount *amount* (already rounded)."""
    supply = cents(qty * prc)
    base = supply - discount
    rate = rate_percent / _HUNDRED
    if scheme == "split":
        taxable = cents(base / (1 + rate))
        tax = base - taxable
        total = taxable + tax
    elif scheme == "inclusive":
        taxable = base
        tax = cents(base * rate / (1 + rate))
        total = base
    elif scheme == "exclusive":
        taxable = base
        tax = cents(base * rate)
        total = taxable + tax
    else:
        raise ValueError(f"unknown VAT scheme {scheme!r}")
    return {"splyAmt": supply, "taxblAmt": taxable, "taxAmt": tax, "totAmt": total}


def expected_amounts(
    body: Mapping[str, Any], scheme: str, rates: Mapping[str, Decimal], *, stock: bool
) -> tuple[list[dict[str, Decimal]], dict[str, Decimal]]:
    """Expected line amounts and header amounts of a sale (``stock=False``) or stock body.

    Raises ``ValueError`` for a line without a readable ``qty``/``prc``/``taxTyCd`` (the
    field checks report those first).
    """
    expected: list[dict[str, Decimal]] = []
    taxable = dict.fromkeys(TAX_TYPES, Decimal("0.00"))
    tax = dict.fromkeys(TAX_TYPES, Decimal("0.00"))
    for index, line in enumerate(_lines(body)):
        qty, prc = _number(line, "qty", index), _number(line, "prc", index)
        tax_type = str(line.get("taxTyCd"))
        if tax_type not in rates or tax_type not in taxable:
            raise ValueError(f"itemList.{index}.taxTyCd: no rate for {tax_type!r}")
        if stock:
            discount_field = "totDcAmt"
            discount = _number(line, "totDcAmt", index, default=Decimal(0))
        else:
            discount_field = "dcAmt"
            dc_rt = _number(line, "dcRt", index, default=Decimal(0))
            discount = cents(cents(qty * prc) * dc_rt / _HUNDRED)
        amounts = line_amounts(qty, prc, Decimal(rates[tax_type]), scheme, discount)
        amounts[discount_field] = discount
        taxable[tax_type] += amounts["taxblAmt"]
        tax[tax_type] += amounts["taxAmt"]
        expected.append(amounts)
    header: dict[str, Decimal] = {}
    if not stock:
        for tax_type in TAX_TYPES:
            header[f"taxblAmt{tax_type}"] = taxable[tax_type]
            header[f"taxAmt{tax_type}"] = tax[tax_type]
            header[f"taxRt{tax_type}"] = Decimal(rates[tax_type])
    header["totTaxblAmt"] = sum((line["taxblAmt"] for line in expected), Decimal("0.00"))
    header["totTaxAmt"] = sum((line["taxAmt"] for line in expected), Decimal("0.00"))
    header["totAmt"] = sum((line["totAmt"] for line in expected), Decimal("0.00"))
    return expected, header


def amount_problems(
    body: Mapping[str, Any], scheme: str, rates: Mapping[str, Decimal], *, stock: bool
) -> list[str]:
    """Every amount off by more than :data:`TOLERANCE`, in GavaConnect's wording
    ("Invalid taxblAmt on item: 1. Expected: 862.07, But Found: 1000.00")."""
    expected, header = expected_amounts(body, scheme, rates, stock=stock)
    problems: list[str] = []
    for index, (line, amounts) in enumerate(zip(_lines(body), expected, strict=True)):
        for name, want in amounts.items():
            problem = _compare(f"{name} on item: {index + 1}", want, line.get(name))
            if problem:
                problems.append(problem)
    for name, want in header.items():
        problem = _compare(name, want, body.get(name))
        if problem:
            problems.append(problem)
    return problems


def _compare(where: str, want: Decimal, raw: Any) -> str | None:
    if raw is None:
        return None  # absence is the field checks' to report
    found = wire_decimal(raw)
    if found is None:
        return f"Invalid {where}. Expected: {want:.2f}, But Found: {raw!r}"
    if abs(found - want) > TOLERANCE:
        return f"Invalid {where}. Expected: {want:.2f}, But Found: {found:.2f}"
    return None


def _lines(body: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    lines = body.get("itemList")
    return lines if isinstance(lines, list) else []


def _number(
    line: Mapping[str, Any], name: str, index: int, default: Decimal | None = None
) -> Decimal:
    raw = line.get(name)
    if raw is None and default is not None:
        return default
    value = wire_decimal(raw)
    if value is None:
        raise ValueError(f"itemList.{index}.{name}: not a number: {raw!r}")
    return value
