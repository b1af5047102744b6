"""Field shapes and amounts, delegated to ``schemas`` so intake and the simulator agree.

``schemas.REQUEST_MODELS`` says what KRA accepts on each endpoint; ``schemas.vat`` says
which amounts are right under a VAT scheme. This module only adapts their answers into the
910 messages KRA gives: one naming the field path, one in live-G's amount wording
("Invalid taxblAmt on item: 1. Expected: 862.07, But Found: 1000.00").
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from schemas.base import format_errors
from schemas.requests import REQUEST_MODELS
from schemas.vat import check_sale_amounts, check_stock_io_amounts
from worker.simulator.options import SimulatorOptions

#: How many field problems one 910 message lists (KRA names one; more helps whoever fixes).
MAX_LISTED = 3


def field_errors(endpoint: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(dotted path, message) for every shape problem of ``body``; empty when it is valid."""
    model = REQUEST_MODELS.get(endpoint)
    if model is None:
        return []
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return format_errors(exc)
    return []


def describe(problems: Sequence[tuple[str, str]]) -> str:
    """``"Invalid request parameter: itemList.0.itemCd: String should have ..."``."""
    listed = "; ".join(f"{path or 'body'}: {message}" for path, message in problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    suffix = f" (and {more} more)" if more > 0 else ""
    return f"Invalid request parameter: {listed}{suffix}"


def amount_problem(endpoint: str, body: dict[str, Any], options: SimulatorOptions) -> str | None:
    """The first amount (or ``taxRtX``) that is wrong under the run's VAT scheme, worded as
    GavaConnect does; ``None`` when every amount adds up."""
    rates: dict[str, Decimal] = dict(options.tax_rates)
    if endpoint == "saveTrnsSalesOsdc":
        issues = check_sale_amounts(body, options.vat_scheme, rates)
    elif endpoint == "insertStockIO":
        issues = check_stock_io_amounts(body, options.vat_scheme, rates)
    else:
        return None
    # A wrong rate is reported first, in KRA's words (live host, oscu-reference §5.1): its
    # line amounts are wrong too, but the rate is what the sender has to fix.
    for issue in issues:
        if issue.path.startswith("taxRt"):
            found = format(issue.found.normalize(), "f")
            return (
                f"Rule {issue.path} failed: Tax rate mismatch. "
                f"Expected: {issue.expected:.2f}, Found: {found}"
            )
    return str(issues[0]) if issues else None
