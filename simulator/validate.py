"""Field shapes and amounts, as the simulator's own reading of the spec.

:mod:`simulator.fields` says what KRA accepts on each endpoint and
:mod:`simulator.amounts` which amounts are right under a VAT scheme; neither imports
``schemas`` (the relay's request models), so the relay and the simulator do not agree by
construction. This module only adapts their answers into the 910 messages KRA gives: one
naming the field path, one in live-G's amount wording ("Invalid taxblAmt on item: 1.
Expected: 862.07, But Found: 1000.00").
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from simulator.amounts import amount_problems
from simulator.fields import field_problems
from simulator.options import SimulatorOptions

#: How many field problems one 910 message lists (KRA names one; more helps whoever fixes).
MAX_LISTED = 3


def field_errors(endpoint: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(dotted path, message) for every shape problem of ``body``; empty when it is valid."""
    return field_problems(endpoint, body)


def describe(problems: Sequence[tuple[str, str]]) -> str:
    """``"Invalid request parameter: itemList.0.itemCd: at most 20 characters ..."``."""
    listed = "; ".join(f"{path or 'body'}: {message}" for path, message in problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    suffix = f" (and {more} more)" if more > 0 else ""
    return f"Invalid request parameter: {listed}{suffix}"


def amount_problem(endpoint: str, body: dict[str, Any], options: SimulatorOptions) -> str | None:
    """The first amount (or ``taxRtX``) that is wrong under the run's VAT scheme, worded as
    GavaConnect does; ``None`` when every amount adds up."""
    rates: dict[str, Decimal] = dict(options.tax_rates)
    if endpoint == "saveTrnsSalesOsdc":
        issues = amount_problems(body, options.vat_scheme, rates, stock=False)
    elif endpoint == "insertStockIO":
        issues = amount_problems(body, options.vat_scheme, rates, stock=True)
    else:
        return None
    if endpoint == "saveTrnsSalesOsdc" and (wrong_rate := _rate_problem(body, rates)):
        # A wrong rate is reported first, in KRA's words (a live host's answer): its line
        # amounts are wrong too, but the rate is what the sender has to fix.
        return wrong_rate
    return issues[0] if issues else None


def _rate_problem(body: dict[str, Any], rates: dict[str, Decimal]) -> str | None:
    """``taxRtX`` must be KRA's configured rate for type X (class 04 of its code list)."""
    for code in "ABCDE":
        raw, want = body.get(f"taxRt{code}"), rates.get(code)
        if raw is None or want is None or isinstance(raw, bool):
            continue
        try:
            found = Decimal(str(raw))
        except ArithmeticError:
            continue  # not a number: the field checks report it
        if found != want:
            shown = format(found.normalize(), "f")
            return (
                f"Rule taxRt{code} failed: Tax rate mismatch. Expected: {want:.2f}, Found: {shown}"
            )
    return None
