"""Which request model validates which OSCU endpoint (spec path names, §2.1 and §2.2).

The simulator validates every incoming body with ``REQUEST_MODELS[endpoint]``; intake and the
pipeline use the same table, so "what KRA accepts" is written down once.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pydantic import BaseModel

from schemas.branch import BhfCustomerRequest, BhfInsuranceRequest, BhfUserRequest
from schemas.items import ImportItemUpdateRequest, ItemCompositionRequest, ItemSaveRequest
from schemas.lookups import (
    CustomerLookupRequest,
    InitRequest,
    InvoiceDetailsRequest,
    LastReqDtRequest,
)
from schemas.purchases import PurchaseRequest
from schemas.sales import SaleRequest
from schemas.stock import StockIORequest, StockMasterRequest

__all__ = ["LOOKUP_ENDPOINTS", "REQUEST_MODELS", "WRITE_ENDPOINTS"]

#: Endpoints that change KRA state: never blind-retried (``selectInitOsdcInfo`` is one: it
#: issues the device key once).
WRITE_ENDPOINTS: frozenset[str] = frozenset(
    {
        "selectInitOsdcInfo",
        "saveItem",
        "saveItemComposition",
        "saveBhfCustomer",
        "saveBhfUser",
        "saveBhfInsurance",
        "updateImportItem",
        "saveTrnsSalesOsdc",
        "insertTrnsPurchase",
        "insertStockIO",
        "saveStockMaster",
    }
)

#: Side-effect-free lookups: safe to retry on any transient failure.
LOOKUP_ENDPOINTS: frozenset[str] = frozenset(
    {
        "selectCodeList",
        "selectCustomer",
        "selectNoticeList",
        "selectItemClsList",
        "selectItemList",
        "selectBhfList",
        "selectImportItemList",
        "selectTrnsPurchaseSalesList",
        "selectStockMoveList",
        "selectInvoiceDetails",
    }
)

REQUEST_MODELS: Mapping[str, type[BaseModel]] = MappingProxyType(
    {
        "selectInitOsdcInfo": InitRequest,
        "selectCodeList": LastReqDtRequest,
        "selectCustomer": CustomerLookupRequest,
        "selectNoticeList": LastReqDtRequest,
        "selectItemClsList": LastReqDtRequest,
        "saveItem": ItemSaveRequest,
        "selectItemList": LastReqDtRequest,
        "saveItemComposition": ItemCompositionRequest,
        "selectBhfList": LastReqDtRequest,
        "saveBhfCustomer": BhfCustomerRequest,
        "saveBhfUser": BhfUserRequest,
        "saveBhfInsurance": BhfInsuranceRequest,
        "selectImportItemList": LastReqDtRequest,
        "updateImportItem": ImportItemUpdateRequest,
        "saveTrnsSalesOsdc": SaleRequest,
        "selectTrnsPurchaseSalesList": LastReqDtRequest,
        "insertTrnsPurchase": PurchaseRequest,
        "selectStockMoveList": LastReqDtRequest,
        "insertStockIO": StockIORequest,
        "saveStockMaster": StockMasterRequest,
        "selectInvoiceDetails": InvoiceDetailsRequest,
    }
)
