"""``insertTrnsPurchase`` (§3.3.7.2): confirm or record a purchase.

Less certain than the sale model: the field list follows the Paybill transcription of the
spec table (``TrnsPurchaseSaveReq``) and its samples, which no live evidence contradicts yet;
required-ness of ``pmtTyCd``, ``cfmDt`` and the line ``pkgUnitCd`` follows that table.
Amounts follow the same schemes as sales (live-G applies the same validator: "Invalid
splyAmnt ... Expected: 1302.07"), checked by :func:`schemas.vat.check_sale_amounts`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from schemas.base import ItemSeq, Registrant, TaxTotals, WireModel, item_list_errors, raise_if_any
from schemas.codes import (
    PaymentType,
    PurchaseReceiptType,
    RegistrationType,
    SalesType,
    TaxType,
    TransactionProgress,
)
from schemas.types import D8, D14, BhfId, Char, DiscountRate, DocNumber, Money, Qty, Tin

__all__ = ["PurchaseItem", "PurchaseRequest"]


class PurchaseItem(WireModel):
    """One purchased line, with the supplier's own codes next to ours."""

    itemSeq: ItemSeq
    itemCd: Annotated[str, Char(20)] | None = None
    itemClsCd: Annotated[str, Char(10)]
    itemNm: Annotated[str, Char(200)]
    bcd: Annotated[str, Char(20)] | None = None
    spplrItemClsCd: Annotated[str, Char(10)] | None = None
    spplrItemCd: Annotated[str, Char(20)] | None = None
    spplrItemNm: Annotated[str, Char(200)] | None = None
    pkgUnitCd: Annotated[str, Char(5)] | None = None
    pkg: Qty
    qtyUnitCd: Annotated[str, Char(5)]
    qty: Annotated[Qty, Field(gt=0)]
    prc: Money
    splyAmt: Money
    dcRt: DiscountRate
    dcAmt: Money
    taxblAmt: Money
    taxTyCd: TaxType
    taxAmt: Money
    totAmt: Money
    itemExprDt: D8 | None = None


class PurchaseRequest(TaxTotals, Registrant):
    """A purchase (``rcptTyCd P``) or a purchase credit note (``R``)."""

    invcNo: Annotated[DocNumber, Field(ge=1)]
    orgInvcNo: DocNumber
    spplrTin: Tin | None = None
    spplrBhfId: BhfId | None = None
    spplrNm: Annotated[str, Char(60)] | None = None
    spplrInvcNo: DocNumber | None = None
    regTyCd: RegistrationType
    pchsTyCd: SalesType
    rcptTyCd: PurchaseReceiptType
    pmtTyCd: PaymentType
    pchsSttsCd: TransactionProgress
    cfmDt: D14 | None = None
    pchsDt: D8
    wrhsDt: D14 | None = None
    cnclReqDt: D14 | None = None
    cnclDt: D14 | None = None
    rfdDt: D14 | None = None
    totItemCnt: Annotated[DocNumber, Field(ge=1, le=999)]
    remark: Annotated[str, Char(400)] | None = None
    itemList: Annotated[list[PurchaseItem], Field(min_length=1, max_length=999)]

    @model_validator(mode="after")
    def _document_rules(self) -> PurchaseRequest:
        raise_if_any(type(self).__name__, item_list_errors(self.itemList, self.totItemCnt))
        return self
