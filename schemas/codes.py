"""OSCU code lists (the spec's code classes) as string enums.

Values are the wire codes, so a model field typed with one of these refuses an unknown code
with an error that names the field. KRA publishes these lists through ``selectCodeList``; the
enums are the fallback the spec allows, and tax *rates* are deliberately not hard-wired here:
they are configuration (class 04), with :data:`DEFAULT_TAX_RATES` as the spec's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

__all__ = [
    "DEFAULT_TAX_RATES",
    "ImportItemStatus",
    "PaymentType",
    "ProductType",
    "PurchaseReceiptType",
    "ReceiptType",
    "RefundReason",
    "RegistrationType",
    "SalesType",
    "StockIOType",
    "TaxType",
    "TaxpayerStatus",
    "TransactionProgress",
    "YesNo",
]


class TaxType(StrEnum):
    """Tax type [04]; the header carries one taxable/tax/rate triple per member."""

    #: exempt
    A = "A"
    #: standard VAT
    B = "B"
    #: zero-rated
    C = "C"
    #: non-VAT
    D = "D"
    #: reduced rate
    E = "E"


#: Spec §4.1 rates in percent. KRA's class 04 is the authority (live-G rejected ``taxRtE 8``),
#: so callers pass rates from settings; this is only the documented starting point. Keyed by
#: plain strings in the type (``TaxType`` members are strings) so it fits every ``rates``
#: parameter.
DEFAULT_TAX_RATES: Mapping[str, Decimal] = MappingProxyType(
    {
        TaxType.A: Decimal("0"),
        TaxType.B: Decimal("16"),
        TaxType.C: Decimal("0"),
        TaxType.D: Decimal("0"),
        TaxType.E: Decimal("8"),
    }
)


class ReceiptType(StrEnum):
    """Sales receipt type [37]."""

    #: sale
    SALE = "S"
    #: credit note after a sale
    CREDIT_NOTE = "R"


class PurchaseReceiptType(StrEnum):
    """Purchase receipt type [38]."""

    #: purchase
    PURCHASE = "P"
    #: credit note after a purchase
    CREDIT_NOTE = "R"


class SalesType(StrEnum):
    """Sales / purchase type [14] (``salesTyCd``, ``pchsTyCd``); live traffic uses ``N``."""

    NORMAL = "N"
    COPY = "C"
    PROFORMA = "P"
    TRAINING = "T"


class PaymentType(StrEnum):
    """Payment type [07] (``pmtTyCd``)."""

    CASH = "01"
    CREDIT = "02"
    CASH_CREDIT = "03"
    BANK_CHEQUE = "04"
    CARD = "05"
    MOBILE_MONEY = "06"
    OTHER = "07"


class TransactionProgress(StrEnum):
    """Transaction progress [11] (``salesSttsCd``, ``pchsSttsCd``); sales are ``02``."""

    WAIT_FOR_APPROVAL = "01"
    APPROVED = "02"
    CANCEL_REQUESTED = "03"
    CANCELLED = "04"
    CREDIT_NOTE_GENERATED = "05"
    TRANSFERRED = "06"


class StockIOType(StrEnum):
    """Stock in/out type [12] (``sarTyCd``): ``0x`` brings stock in, ``1x`` takes it out."""

    #: goods received from abroad
    IMPORT = "01"
    #: local purchase receipt
    PURCHASE = "02"
    #: customer return (credit note that brings goods back)
    RETURN_IN = "03"
    #: transfer received from another branch
    TRANSFER_IN = "04"
    #: manufacturing output
    PROCESSING_IN = "05"
    #: opening stock / positive count
    ADJUSTMENT_IN = "06"
    #: delivery for a signed sale
    SALE = "11"
    #: return to supplier
    RETURN_OUT = "12"
    #: transfer sent to another branch
    TRANSFER_OUT = "13"
    #: consumed in manufacturing
    PROCESSING_OUT = "14"
    #: write-off / scrap
    DISCARD = "15"
    #: negative count
    ADJUSTMENT_OUT = "16"

    @property
    def is_in(self) -> bool:
        """Whether the movement adds to the branch's stock (KRA's running balance rises)."""
        return self.value.startswith("0")

    @property
    def direction(self) -> Literal["in", "out"]:
        return "in" if self.is_in else "out"


class ProductType(StrEnum):
    """Product type [24] (``itemTyCd``); services carry no stock."""

    RAW_MATERIAL = "1"
    FINISHED_PRODUCT = "2"
    SERVICE = "3"


class RefundReason(StrEnum):
    """Credit-note reason [32] (``rfdRsnCd``); required on every credit note."""

    MISSING_QUANTITY = "01"
    MISSING_DATA = "02"
    DAMAGED = "03"
    WASTED = "04"
    RAW_MATERIAL_SHORTAGE = "05"
    REFUND = "06"


class RegistrationType(StrEnum):
    """Registration type [31] (``regTyCd``)."""

    AUTOMATIC = "A"
    MANUAL = "M"


class TaxpayerStatus(StrEnum):
    """Taxpayer status [15], as returned by ``selectCustomer``."""

    ACTIVE = "A"
    INACTIVE = "D"


class ImportItemStatus(StrEnum):
    """Import item status [26] (``imptItemSttsCd``)."""

    UNSENT = "1"
    WAITING = "2"
    APPROVED = "3"
    CANCELLED = "4"


class YesNo(StrEnum):
    """The spec's ``Y``/``N`` flags (``useYn``, ``prchrAcptcYn``, ``isrcAplcbYn``...)."""

    YES = "Y"
    NO = "N"
