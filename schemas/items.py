"""Item writes: ``saveItem`` (§3.2), ``saveItemComposition`` and ``updateImportItem`` (§2.1)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from schemas.base import ItemSeq, Modifier, Registrant, raise_if_any, rule_error
from schemas.codes import ImportItemStatus, ProductType, TaxType, YesNo
from schemas.types import Char, Money, Qty

__all__ = ["ImportItemUpdateRequest", "ItemCompositionRequest", "ItemSaveRequest"]


class ItemSaveRequest(Registrant):
    """Register or update (upsert by ``itemCd``) an item; sales and stock need it first."""

    itemCd: Annotated[str, Char(20)]
    itemClsCd: Annotated[str, Char(10)]
    itemTyCd: ProductType
    itemNm: Annotated[str, Char(200)]
    itemStdNm: Annotated[str, Char(200)] | None = None
    #: Origin country (class 05); live-G: "orgnNatCd cannot be null".
    orgnNatCd: Annotated[str, Char(5)]
    pkgUnitCd: Annotated[str, Char(5)]
    qtyUnitCd: Annotated[str, Char(5)]
    taxTyCd: TaxType
    btchNo: Annotated[str, Char(10)] | None = None
    bcd: Annotated[str, Char(20)] | None = None
    dftPrc: Money
    grpPrcL1: Money | None = None
    grpPrcL2: Money | None = None
    grpPrcL3: Money | None = None
    grpPrcL4: Money | None = None
    grpPrcL5: Money | None = None
    addInfo: Annotated[str, Char(7)] | None = None
    sftyQty: Qty | None = None
    isrcAplcbYn: YesNo
    useYn: YesNo


class ItemCompositionRequest(Registrant):
    """One component of a bill of materials (fields are not tabled in the spec)."""

    itemCd: Annotated[str, Char(20)]
    cpstItemCd: Annotated[str, Char(20)]
    cpstQty: Annotated[Qty, Field(gt=0)]


class ImportItemUpdateRequest(Modifier):
    """Approve or reject a customs import line and link it to our own item.

    ``dclDe`` is echoed from ``selectImportItemList``, whose dates are not always real dates
    (a sample has ``-1``), so it is only length-checked. Lengths of ``taskCd``/``hsCd`` are
    not tabled in the reference; the limits below are generous guesses.
    """

    taskCd: Annotated[str, Char(50)]
    dclDe: Annotated[str, Char(8)]
    itemSeq: ItemSeq
    hsCd: Annotated[str, Char(17)]
    itemClsCd: Annotated[str, Char(10)]
    itemCd: Annotated[str, Char(20)]
    imptItemSttsCd: ImportItemStatus
    remark: Annotated[str, Char(400)] | None = None

    @model_validator(mode="after")
    def _approval_has_remark(self) -> ImportItemUpdateRequest:
        """live-G answers 999 (a *transient* code we would retry forever) to an approval
        without a remark, so refuse it here instead."""
        if self.imptItemSttsCd is ImportItemStatus.APPROVED and self.remark is None:
            raise_if_any(
                type(self).__name__,
                [rule_error(("remark",), "required when approving an import (status 3)", None)],
            )
        return self
