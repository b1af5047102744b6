"""``saveTrnsSalesOsdc``: a sale or a credit note to be signed (docs/oscu.md: numbers, credit
notes).

The model checks shape and the rules KRA enforces without context: line numbering, the line
count, and what makes a credit note. Amounts are checked separately by
:func:`schemas.vat.check_sale_amounts`, because which numbers are right depends on the VAT
scheme the target host expects (§7.1).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator
from pydantic_core import InitErrorDetails

from schemas.base import (
    ItemSeq,
    Registrant,
    TaxTotals,
    WireModel,
    item_list_errors,
    raise_if_any,
    rule_error,
)
from schemas.codes import (
    PaymentType,
    ReceiptType,
    RefundReason,
    SalesType,
    TaxType,
    TransactionProgress,
    YesNo,
)
from schemas.types import D8, D14, Char, DiscountRate, DocNumber, Money, Qty, Tin

__all__ = ["SaleItem", "SaleReceipt", "SaleRequest"]


class SaleReceipt(WireModel):
    """``receipt`` sub-object: what is printed on the customer's receipt."""

    custTin: Tin | None = None
    custMblNo: Annotated[str, Char(20)] | None = None
    rcptPbctDt: D14
    #: Only 20 characters: the short trade name on the slip.
    trdeNm: Annotated[str, Char(20)] | None = None
    adrs: Annotated[str, Char(200)] | None = None
    topMsg: Annotated[str, Char(20)] | None = None
    btmMsg: Annotated[str, Char(20)] | None = None
    prchrAcptcYn: YesNo
    #: Not in the spec; navari and Royce send ``1`` and KRA ignores it.
    rptNo: DocNumber | None = None


class SaleItem(WireModel):
    """One ``itemList`` line. ``itemClsCd`` is required as in ``etims`` (Paybill: optional)."""

    itemSeq: ItemSeq
    itemClsCd: Annotated[str, Char(10)]
    itemCd: Annotated[str, Char(20)]
    itemNm: Annotated[str, Char(200)]
    bcd: Annotated[str, Char(20)] | None = None
    pkgUnitCd: Annotated[str, Char(5)]
    pkg: Qty
    qtyUnitCd: Annotated[str, Char(5)]
    qty: Annotated[Qty, Field(gt=0)]
    prc: Money
    splyAmt: Money
    dcRt: DiscountRate
    dcAmt: Money
    isrccCd: Annotated[str, Char(10)] | None = None
    isrccNm: Annotated[str, Char(100)] | None = None
    isrcRt: Annotated[DocNumber, Field(le=100)] | None = None
    isrcAmt: Money | None = None
    taxTyCd: TaxType
    taxblAmt: Money
    taxAmt: Money
    totAmt: Money


class SaleRequest(TaxTotals, Registrant):
    """A sale (``rcptTyCd S``, ``orgInvcNo 0``) or a credit note (``R``) to be signed."""

    trdInvcNo: Annotated[str, Char(50)]
    invcNo: Annotated[DocNumber, Field(ge=1)]
    orgInvcNo: DocNumber
    custTin: Tin | None = None
    custNm: Annotated[str, Char(60)] | None = None
    #: In the spec sample but not its table; Odoo omits it, others send ``N``.
    salesTyCd: SalesType | None = None
    rcptTyCd: ReceiptType
    pmtTyCd: PaymentType | None = None
    salesSttsCd: TransactionProgress
    cfmDt: D14
    salesDt: D8
    stockRlsDt: D14 | None = None
    cnclReqDt: D14 | None = None
    cnclDt: D14 | None = None
    rfdDt: D14 | None = None
    rfdRsnCd: RefundReason | None = None
    totItemCnt: Annotated[DocNumber, Field(ge=1, le=999)]
    prchrAcptcYn: YesNo
    remark: Annotated[str, Char(400)] | None = None
    receipt: SaleReceipt
    itemList: Annotated[list[SaleItem], Field(min_length=1, max_length=999)]

    @model_validator(mode="after")
    def _document_rules(self) -> SaleRequest:
        raise_if_any(
            type(self).__name__,
            item_list_errors(self.itemList, self.totItemCnt) + self._credit_note_errors(),
        )
        return self

    def _credit_note_errors(self) -> list[InitErrorDetails]:
        """A credit note names the sale it credits, why, and when (live-G: "Missing RfdDt
        Date", "Invalid RfdRsnCd"); a plain sale credits nothing."""
        if self.rcptTyCd is ReceiptType.SALE:
            if self.orgInvcNo != 0:
                return [
                    rule_error(("orgInvcNo",), "must be 0 for a sale (rcptTyCd S)", self.orgInvcNo)
                ]
            return []
        errors = []
        if self.orgInvcNo == 0:
            errors.append(
                rule_error(
                    ("orgInvcNo",),
                    "a credit note (rcptTyCd R) must name the credited invcNo (> 0)",
                    self.orgInvcNo,
                )
            )
        if self.rfdRsnCd is None:
            errors.append(
                rule_error(("rfdRsnCd",), "required for a credit note (rcptTyCd R)", None)
            )
        if self.rfdDt is None:
            errors.append(rule_error(("rfdDt",), "required for a credit note (rcptTyCd R)", None))
        return errors
