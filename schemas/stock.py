"""``insertStockIO`` and ``saveStockMaster`` (docs/oscu.md: numbers; stock jobs).

Stock lines differ from sale lines in two ways that matter: the discount is an amount
(``totDcAmt``, no rate), and the header carries only totals, no per-tax-type fields.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from schemas.base import ItemSeq, Registrant, WireModel, item_list_errors, raise_if_any
from schemas.codes import RegistrationType, StockIOType, TaxType
from schemas.types import D8, BhfId, Char, DocNumber, Money, Qty, Tin

__all__ = ["StockIOItem", "StockIORequest", "StockMasterRequest"]


class StockIOItem(WireModel):
    """One movement line; ``itemCd`` is optional in the spec table."""

    itemSeq: ItemSeq
    itemCd: Annotated[str, Char(20)] | None = None
    itemClsCd: Annotated[str, Char(10)]
    itemNm: Annotated[str, Char(200)]
    bcd: Annotated[str, Char(20)] | None = None
    pkgUnitCd: Annotated[str, Char(5)]
    pkg: Qty
    qtyUnitCd: Annotated[str, Char(5)]
    qty: Annotated[Qty, Field(gt=0)]
    itemExprDt: D8 | None = None
    prc: Money
    splyAmt: Money
    totDcAmt: Money
    taxblAmt: Money
    taxTyCd: TaxType
    taxAmt: Money
    totAmt: Money


class StockIORequest(Registrant):
    """A stock movement. ``orgSarNo`` is a required integer, ``0`` when the movement continues
    nothing: GavaConnect fails with a NullPointerException on ``null``."""

    sarNo: Annotated[DocNumber, Field(ge=1)]
    orgSarNo: DocNumber
    regTyCd: RegistrationType
    custTin: Tin | None = None
    custNm: Annotated[str, Char(100)] | None = None
    custBhfId: BhfId | None = None
    sarTyCd: StockIOType
    ocrnDt: D8
    totItemCnt: Annotated[DocNumber, Field(ge=1, le=999)]
    totTaxblAmt: Money
    totTaxAmt: Money
    totAmt: Money
    remark: Annotated[str, Char(400)] | None = None
    itemList: Annotated[list[StockIOItem], Field(min_length=1, max_length=999)]

    @model_validator(mode="after")
    def _document_rules(self) -> StockIORequest:
        raise_if_any(type(self).__name__, item_list_errors(self.itemList, self.totItemCnt))
        return self


class StockMasterRequest(Registrant):
    """The item's remaining quantity at this branch; must equal KRA's running balance."""

    itemCd: Annotated[str, Char(20)]
    rsdQty: Qty
