"""The OSCU wire format as pydantic models, plus code lists, VAT arithmetic and the QR link.

Pure data: no I/O, and no imports from ``worker``, ``producers`` or ``etims_relay``, so that
producers, workers and the simulator can all depend on it. Modules:

- :mod:`schemas.types`: constrained wire types (PIN, branch, D14/D8 dates, amounts)
- :mod:`schemas.codes`: code lists as string enums
- :mod:`schemas.sales`, :mod:`schemas.stock`, :mod:`schemas.items`, :mod:`schemas.branch`,
  :mod:`schemas.purchases`, :mod:`schemas.lookups`: request models, one per endpoint family
- :mod:`schemas.requests`: ``REQUEST_MODELS``, endpoint name -> request model
- :mod:`schemas.envelope`: lenient response parsing (envelope, signature, init info)
- :mod:`schemas.vat`: the three VAT schemes, fill and check
- :mod:`schemas.qr`: the receipt verification link
- :mod:`schemas.result_codes`: result codes and what they mean for a sender
"""

from __future__ import annotations

from schemas.base import (
    BranchBody,
    Modifier,
    Registrant,
    TaxTotals,
    WireModel,
    format_errors,
    rule_error,
)
from schemas.branch import BhfCustomerRequest, BhfInsuranceRequest, BhfUserRequest
from schemas.codes import (
    DEFAULT_TAX_RATES,
    ImportItemStatus,
    PaymentType,
    ProductType,
    PurchaseReceiptType,
    ReceiptType,
    RefundReason,
    RegistrationType,
    SalesType,
    StockIOType,
    TaxpayerStatus,
    TaxType,
    TransactionProgress,
    YesNo,
)
from schemas.envelope import Envelope, InitInfo, InvoiceDetails, SaleSignature, strip_keys
from schemas.items import ImportItemUpdateRequest, ItemCompositionRequest, ItemSaveRequest
from schemas.lookups import (
    CustomerLookupRequest,
    InitRequest,
    InvoiceDetailsRequest,
    LastReqDtRequest,
)
from schemas.purchases import PurchaseItem, PurchaseRequest
from schemas.qr import PRODUCTION_RECEIPT_HOST, SANDBOX_RECEIPT_HOST, receipt_qr_url
from schemas.requests import LOOKUP_ENDPOINTS, REQUEST_MODELS, WRITE_ENDPOINTS
from schemas.result_codes import ResultCode
from schemas.sales import SaleItem, SaleReceipt, SaleRequest
from schemas.stock import StockIOItem, StockIORequest, StockMasterRequest
from schemas.types import (
    D8,
    D14,
    EAT,
    BhfId,
    Char,
    DiscountRate,
    DocNumber,
    Money,
    Qty,
    Rate,
    SecretText,
    Tin,
    now_d14,
    parse_d8,
    parse_d14,
    to_d8,
    to_d14,
)
from schemas.vat import (
    DEFAULT_AMOUNT_TOLERANCE,
    DEFAULT_VAT_SCHEME,
    AmountIssue,
    VatScheme,
    check_sale_amounts,
    check_stock_io_amounts,
    complete_sale_amounts,
    complete_stock_io_amounts,
    compute_line_amounts,
    compute_sale_amounts,
    compute_stock_io_amounts,
    fill_sale_amounts,
    fill_stock_io_amounts,
    round_half_up,
)

__all__ = [
    "D8",
    "D14",
    "DEFAULT_AMOUNT_TOLERANCE",
    "DEFAULT_TAX_RATES",
    "DEFAULT_VAT_SCHEME",
    "EAT",
    "LOOKUP_ENDPOINTS",
    "PRODUCTION_RECEIPT_HOST",
    "REQUEST_MODELS",
    "SANDBOX_RECEIPT_HOST",
    "WRITE_ENDPOINTS",
    "AmountIssue",
    "BhfCustomerRequest",
    "BhfId",
    "BhfInsuranceRequest",
    "BhfUserRequest",
    "BranchBody",
    "Char",
    "CustomerLookupRequest",
    "DiscountRate",
    "DocNumber",
    "Envelope",
    "ImportItemStatus",
    "ImportItemUpdateRequest",
    "InitInfo",
    "InitRequest",
    "InvoiceDetails",
    "InvoiceDetailsRequest",
    "ItemCompositionRequest",
    "ItemSaveRequest",
    "LastReqDtRequest",
    "Modifier",
    "Money",
    "PaymentType",
    "ProductType",
    "PurchaseItem",
    "PurchaseReceiptType",
    "PurchaseRequest",
    "Qty",
    "Rate",
    "ReceiptType",
    "RefundReason",
    "Registrant",
    "RegistrationType",
    "ResultCode",
    "SaleItem",
    "SaleReceipt",
    "SaleRequest",
    "SaleSignature",
    "SalesType",
    "SecretText",
    "StockIOItem",
    "StockIORequest",
    "StockIOType",
    "StockMasterRequest",
    "TaxTotals",
    "TaxType",
    "TaxpayerStatus",
    "Tin",
    "TransactionProgress",
    "VatScheme",
    "WireModel",
    "YesNo",
    "check_sale_amounts",
    "check_stock_io_amounts",
    "complete_sale_amounts",
    "complete_stock_io_amounts",
    "compute_line_amounts",
    "compute_sale_amounts",
    "compute_stock_io_amounts",
    "fill_sale_amounts",
    "fill_stock_io_amounts",
    "format_errors",
    "now_d14",
    "parse_d8",
    "parse_d14",
    "receipt_qr_url",
    "round_half_up",
    "rule_error",
    "strip_keys",
    "to_d8",
    "to_d14",
]
