"""Tax rates as the relay stores, reads and compares them.

A branch's rates come from KRA's code list (worker/codes.py) and live on its ``devices`` row
as JSON of decimal strings. ``ETIMS_TAX_RATES``, when set, overrides them everywhere;
:func:`override_mismatches` is what ``status`` and the metric report when the two disagree.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection

from schemas.validation import EnqueueOptions
from worker.outbox import device_queries as dq


def rates_from_json(text: str | None) -> dict[str, Decimal] | None:
    """The ``devices.tax_rates`` column as rates (None when never synced)."""
    if not text:
        return None
    return {str(code): Decimal(str(rate)) for code, rate in json.loads(text).items()}


def rates_to_json(rates: Mapping[str, Decimal]) -> str:
    """Rates as stored: decimal strings, exact."""
    return json.dumps({code: str(rates[code]) for code in sorted(rates)})


@dataclass(frozen=True, slots=True)
class RatesMismatch:
    """A branch whose KRA rates differ from the configured override."""

    tin: str
    bhf_id: str
    #: tax type -> (KRA's rate, the override's)
    differences: dict[str, tuple[Decimal, Decimal]]

    def describe(self) -> str:
        return ", ".join(
            f"{code}: KRA {kra} override {mine}" for code, (kra, mine) in self.differences.items()
        )


def override_mismatches(
    stored: Mapping[tuple[str, str], str], override: Mapping[str, Decimal] | None
) -> list[RatesMismatch]:
    """Branches whose stored KRA rates disagree with ``ETIMS_TAX_RATES`` (none without one)."""
    if override is None:
        return []
    found = []
    for (tin, bhf_id), text in sorted(stored.items()):
        kra = rates_from_json(text) or {}
        diff = {
            code: (kra[code], Decimal(override[code]))
            for code in sorted(kra)
            if code in override and kra[code] != Decimal(override[code])
        }
        if diff:
            found.append(RatesMismatch(tin, bhf_id, diff))
    return found


def with_branch_rates(
    conn: Connection, options: EnqueueOptions, keys: Iterable[tuple[str, str]]
) -> EnqueueOptions:
    """``options`` with KRA's stored rates of the branches ``keys`` (one read; none needed
    when ``ETIMS_TAX_RATES`` overrides them)."""
    if options.tax_rates is not None:
        return options
    stored = dq.device_tax_rates(conn, keys)
    rates = {key: parsed for key, text in stored.items() if (parsed := rates_from_json(text))}
    return dataclasses.replace(options, branch_rates=rates)
