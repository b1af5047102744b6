"""Building blocks of the request models: the strict base, the audit fields, error reporting.

Field names are the OSCU wire names (camelCase) so a model dumps to the wire body as is.
Every request model refuses unknown fields: a typo would otherwise be dropped silently and
reach KRA as a missing field. Cross-field rules raise a :class:`pydantic.ValidationError`
whose ``loc`` points at the offending field (``itemList.2.itemSeq``), not at the model, so
intake can tell a till exactly which line to fix (README, invariant 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.types import BhfId, Char, DocNumber, Money, Rate, Tin

__all__ = [
    "BranchBody",
    "Modifier",
    "Registrant",
    "TaxTotals",
    "WireModel",
    "format_errors",
    "rule_error",
]


class WireModel(BaseModel):
    """Base of every OSCU request model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class BranchBody(WireModel):
    """``tin``/``bhfId`` in the body: optional, since headers carry them, but some GavaConnect
    endpoints answer "tin cannot be Null" without them (docs/oscu.md, "Credentials in headers
    and in the body")."""

    tin: Tin | None = None
    bhfId: BhfId | None = None


class Modifier(BranchBody):
    """Who last changed the record; ``updateImportItem`` takes only these two."""

    modrId: Annotated[str, Char(20)]
    modrNm: Annotated[str, Char(60)]


class Registrant(Modifier):
    """Who registered and who modified; both pairs are required on writes (GavaConnect:
    "modrId may not be empty")."""

    regrId: Annotated[str, Char(20)]
    regrNm: Annotated[str, Char(60)]


class TaxTotals(WireModel):
    """The 15 per-tax-type header fields plus totals; all required, zeros for unused types
    (omitting them is answered 910)."""

    taxblAmtA: Money
    taxblAmtB: Money
    taxblAmtC: Money
    taxblAmtD: Money
    taxblAmtE: Money
    taxRtA: Rate
    taxRtB: Rate
    taxRtC: Rate
    taxRtD: Rate
    taxRtE: Rate
    taxAmtA: Money
    taxAmtB: Money
    taxAmtC: Money
    taxAmtD: Money
    taxAmtE: Money
    totTaxblAmt: Money
    totTaxAmt: Money
    totAmt: Money


#: Line count of a document: 1..999 lines (``itemList``), numbered ``itemSeq`` 1..n.
ItemSeq = Annotated[DocNumber, Field(ge=1, le=999)]
#: ``totItemCnt``.
ItemCount = Annotated[DocNumber, Field(ge=1, le=999)]


def rule_error(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    """One cross-field rule violation, located at the field the caller must change."""
    return InitErrorDetails(
        type=PydanticCustomError("oscu_rule", "{reason}", {"reason": message}),
        loc=loc,
        input=value,
    )


def raise_if_any(title: str, errors: list[InitErrorDetails]) -> None:
    """Raise all rule violations at once, so a caller fixes a document in one round."""
    if errors:
        raise ValidationError.from_exception_data(title, errors)


class _Line(Protocol):
    @property
    def itemSeq(self) -> int: ...


def item_list_errors(lines: Sequence[_Line], tot_item_cnt: int) -> list[InitErrorDetails]:
    """``itemSeq`` must run 1..n in order and ``totItemCnt`` must equal n (spec §3.3)."""
    errors = [
        rule_error(
            ("itemList", index, "itemSeq"), f"must be {index + 1} (lines run 1..n)", line.itemSeq
        )
        for index, line in enumerate(lines)
        if line.itemSeq != index + 1
    ]
    if tot_item_cnt != len(lines):
        errors.append(
            rule_error(
                ("totItemCnt",),
                f"must equal the number of lines in itemList ({len(lines)})",
                tot_item_cnt,
            )
        )
    return errors


def format_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(dotted path, message) pairs such as ``("itemList.0.qty", "Field required")``.

    The path uses the wire names, so it can be shown to whoever produced the document.
    """
    return [(".".join(str(part) for part in error["loc"]), error["msg"]) for error in exc.errors()]
