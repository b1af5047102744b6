"""Turn a producer's payload into the exact OSCU request body (pure, deterministic).

The service fills what only it can know (``tin``/``bhfId``, ``invcNo``, ``orgInvcNo``,
``sarNo``, a stock master's ``rsdQty``) and what producers may leave out (registrant fields,
every amount, computed with the configured VAT scheme). Amounts the producer did send are
kept as sent and checked, never overwritten: a POS that prints its own totals must not have
KRA sign different ones.

The same function runs twice: at intake with placeholder numbers (so bad input is refused
before anything is written) and in the drain at first send with the real numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from schemas.codes import DEFAULT_TAX_RATES
from schemas.jobs import JobKind
from schemas.vat import (
    VatScheme,
    complete_sale_amounts,
    complete_stock_io_amounts,
)
from schemas.wire_numbers import with_json_numbers

#: Placeholder numbers used to validate a body before KRA numbers are allocated.
PLACEHOLDER_NUMBER = 1


@dataclass(frozen=True, slots=True)
class Registrant:
    """Who appears as registrant/modifier on every write (regrId/regrNm/modrId/modrNm)."""

    id: str = "etims-relay"
    name: str = "etims-relay"

    def defaults(self) -> dict[str, str]:
        return {"regrId": self.id, "regrNm": self.name, "modrId": self.id, "modrNm": self.name}


class AmountMismatch(ValueError):
    """Amounts the producer sent disagree with the VAT scheme; names every field that is off."""

    def __init__(self, issues: list[tuple[str, Decimal, Decimal]]) -> None:
        self.issues = issues
        detail = "; ".join(f"{path}: expected {exp}, found {found}" for path, exp, found in issues)
        super().__init__(f"amounts do not add up: {detail}")


def loads_payload(text: str) -> dict[str, Any]:
    """Parse stored JSON keeping every number exact (Decimal, never float)."""
    value = json.loads(text, parse_float=Decimal)
    if not isinstance(value, dict):
        raise ValueError("payload must be a JSON object")
    return value


def complete_body(
    kind: JobKind,
    payload: Mapping[str, Any],
    *,
    tin: str,
    bhf_id: str,
    number: int | None = None,
    org_invc_no: int | None = None,
    rsd_qty: Decimal | None = None,
    registrant: Registrant = Registrant(),
    scheme: VatScheme = VatScheme.SPLIT,
    rates: Mapping[str, Decimal] | None = None,
) -> dict[str, Any]:
    """The request body for ``kind``; raises :class:`AmountMismatch` or ``ValueError``."""
    body: dict[str, Any] = {**registrant.defaults(), **payload, "tin": tin, "bhfId": bhf_id}
    body = with_json_numbers(kind.endpoint, body)  # quoted amounts leave as JSON numbers
    rates = rates or DEFAULT_TAX_RATES
    if kind in (JobKind.SALE, JobKind.CREDIT_NOTE):
        body["invcNo"] = number if number is not None else PLACEHOLDER_NUMBER
        if kind is JobKind.CREDIT_NOTE:
            body.setdefault("rcptTyCd", "R")
            body["orgInvcNo"] = org_invc_no if org_invc_no is not None else PLACEHOLDER_NUMBER
        else:
            body.setdefault("rcptTyCd", "S")
            body["orgInvcNo"] = 0
        body, issues = complete_sale_amounts(body, scheme, rates)
        _raise_on(issues)
    elif kind is JobKind.STOCK_IO:
        body["sarNo"] = number if number is not None else PLACEHOLDER_NUMBER
        body.setdefault("orgSarNo", 0)
        body, issues = complete_stock_io_amounts(body, scheme, rates)
        _raise_on(issues)
    elif kind is JobKind.STOCK_MASTER and body.get("rsdQty") is None:
        if rsd_qty is None and number is not None:
            raise ValueError(
                f"rsdQty: no accepted stock movement of item {body.get('itemCd')} on this "
                "branch yet, and the payload gives no rsdQty"
            )
        body["rsdQty"] = rsd_qty if rsd_qty is not None else Decimal("0")
    return body


def _raise_on(issues: list[Any]) -> None:
    if issues:
        raise AmountMismatch([(i.path, i.expected, i.found) for i in issues])


def dumps_body(body: Mapping[str, Any]) -> str:
    """Serialise a body with amounts as JSON numbers (OSCU wants numbers, not strings)."""
    return json.dumps(
        body, default=_number, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
