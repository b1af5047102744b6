"""The OSCU endpoints (the spec's eight categories and the non-spec lookup) as thin typed methods.

Each method only names the endpoint and says whether it writes: that flag decides how a
failure without an answer is classified (a lookup is safe to retry, a write may have landed).
:data:`ENDPOINTS` is the single list other modules (metrics, the simulator) read.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from worker.oscu.credentials import DeviceCredentials
from worker.oscu.outcome import CallOutcome

__all__ = ["ENDPOINTS", "FLAVOURS", "INIT_ENDPOINT", "EndpointsMixin", "Flavour", "endpoint_path"]

#: The one endpoint sent without tin/bhfId/cmcKey headers: it is how a device gets its key.
INIT_ENDPOINT = "selectInitOsdcInfo"

#: Endpoint name (as appended to the base URL) -> whether it changes KRA state.
ENDPOINTS: dict[str, bool] = {
    INIT_ENDPOINT: True,  # "W-once": a repeat answers 902 or corrupts the device record
    "selectCodeList": False,
    "selectCustomer": False,
    "selectNoticeList": False,
    "selectItemClsList": False,
    "saveItem": True,
    "selectItemList": False,
    "saveItemComposition": True,
    "selectBhfList": False,
    "saveBhfCustomer": True,
    "saveBhfUser": True,
    "saveBhfInsurance": True,
    "selectImportItemList": False,
    "updateImportItem": True,
    "saveTrnsSalesOsdc": True,
    "selectTrnsPurchaseSalesList": False,
    "insertTrnsPurchase": True,
    "selectStockMoveList": False,
    "insertStockIO": True,
    "saveStockMaster": True,
    "selectInvoiceDetails": False,  # not in the spec; receipt recovery (§2.2)
}

#: The two front doors to OSCU: the spec's ``etims-api`` host and KRA's GavaConnect platform.
Flavour = Literal["etims-api", "gavaconnect"]

#: GavaConnect's own path for the endpoints it renamed; every other endpoint keeps its spec
#: name there. Jobs, metrics and outcomes keep the spec names whatever the host: only the URL
#: changes, so a deployment switches host with one setting (``oscu.flavour``).
_GAVACONNECT_PATHS: Mapping[str, str] = {
    INIT_ENDPOINT: "initialize",
    "selectItemClsList": "selectItemClass",
    "selectItemList": "itemInfo",
    "selectBhfList": "branchList",
    "selectCustomer": "customerPinInfo",
    "saveTrnsSalesOsdc": "sendSalesTransaction",
    "selectInvoiceDetails": "selectInvoiceDetail",
    "insertStockIO": "insert/stockIO",
    "saveStockMaster": "save/stockMaster",
    "selectStockMoveList": "selectStockMoveLists",
    "insertTrnsPurchase": "sendPurchaseTransactionInfo",
    "selectTrnsPurchaseSalesList": "getPurchaseTransactionInfo",
}

#: Flavour -> spec endpoint name -> path appended to the base URL (no leading slash).
FLAVOURS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "etims-api": MappingProxyType({name: name for name in ENDPOINTS}),
        "gavaconnect": MappingProxyType(
            {name: _GAVACONNECT_PATHS.get(name, name) for name in ENDPOINTS}
        ),
    }
)


def endpoint_path(endpoint: str, flavour: str = "etims-api") -> str:
    """The path of ``endpoint`` (a spec name) on a host of ``flavour``; an endpoint outside
    the table keeps its name (callers may reach a path the table does not know yet)."""
    try:
        paths = FLAVOURS[flavour]
    except KeyError:
        raise ValueError(f"unknown OSCU flavour {flavour!r}; one of {sorted(FLAVOURS)}") from None
    return paths.get(endpoint, endpoint)


class EndpointsMixin:
    """One method per endpoint, each delegating to :meth:`call` with the right write flag."""

    def call(
        self,
        endpoint: str,
        body: Mapping[str, Any],
        *,
        device: DeviceCredentials | None,
        write: bool,
    ) -> CallOutcome:
        raise NotImplementedError

    def _send(
        self, endpoint: str, device: DeviceCredentials | None, body: Mapping[str, Any]
    ) -> CallOutcome:
        return self.call(endpoint, body, device=device, write=ENDPOINTS[endpoint])

    # -- 1 initialization -------------------------------------------------------------------
    def init_device(self, tin: str, bhf_id: str, serial: str) -> CallOutcome:
        """Verify the device and receive its cmcKey (``data.info.cmcKey``); call once ever."""
        return self._send(INIT_ENDPOINT, None, {"tin": tin, "bhfId": bhf_id, "dvcSrlNo": serial})

    # -- 2 code data ------------------------------------------------------------------------
    def select_code_list(self, device: DeviceCredentials, last_req_dt: str) -> CallOutcome:
        return self._send("selectCodeList", device, {"lastReqDt": last_req_dt})

    def select_customer(self, device: DeviceCredentials, cust_tin: str) -> CallOutcome:
        return self._send("selectCustomer", device, {"custmTin": cust_tin})

    def select_notice_list(self, device: DeviceCredentials, last_req_dt: str) -> CallOutcome:
        return self._send("selectNoticeList", device, {"lastReqDt": last_req_dt})

    # -- 4 items ----------------------------------------------------------------------------
    def select_item_class_list(self, device: DeviceCredentials, last_req_dt: str) -> CallOutcome:
        return self._send("selectItemClsList", device, {"lastReqDt": last_req_dt})

    def save_item(self, device: DeviceCredentials, body: Mapping[str, Any]) -> CallOutcome:
        return self._send("saveItem", device, body)

    def select_item_list(self, device: DeviceCredentials, last_req_dt: str) -> CallOutcome:
        return self._send("selectItemList", device, {"lastReqDt": last_req_dt})

    def save_item_composition(
        self, device: DeviceCredentials, body: Mapping[str, Any]
    ) -> CallOutcome:
        return self._send("saveItemComposition", device, body)

    # -- 3 branches -------------------------------------------------------------------------
    def select_branch_list(self, device: DeviceCredentials, last_req_dt: str) -> CallOutcome:
        return self._send("selectBhfList", device, {"lastReqDt": last_req_dt})

    def save_branch_customer(
        self, device: DeviceCredentials, body: Mapping[str, Any]
    ) -> CallOutcome:
        return self._send("saveBhfCustomer", device, body)

    def save_branch_user(self, device: DeviceCredentials, body: Mapping[str, Any]) -> CallOutcome:
        return self._send("saveBhfUser", device, body)

    def save_branch_insurance(
        self, device: DeviceCredentials, body: Mapping[str, Any]
    ) -> CallOutcome:
        return self._send("saveBhfInsurance", device, body)

    # -- 5 imported items -------------------------------------------------------------------
    def select_import_item_list(self, device: DeviceCredentials, last_req_dt: str) -> CallOutcome:
        return self._send("selectImportItemList", device, {"lastReqDt": last_req_dt})

    def update_import_item(self, device: DeviceCredentials, body: Mapping[str, Any]) -> CallOutcome:
        return self._send("updateImportItem", device, body)

    # -- 6 sales ----------------------------------------------------------------------------
    def save_sale(self, device: DeviceCredentials, body: Mapping[str, Any]) -> CallOutcome:
        """Sign a sale or credit note; ``data`` holds the receipt (curRcptNo, rcptSign...)."""
        return self._send("saveTrnsSalesOsdc", device, body)

    def select_invoice_details(self, device: DeviceCredentials, invc_no: int) -> CallOutcome:
        """The stored sale for ``invc_no``: recovers a receipt after a duplicate answer."""
        return self._send("selectInvoiceDetails", device, {"invcNo": invc_no})

    # -- 7 purchases ------------------------------------------------------------------------
    def select_purchase_sales_list(
        self, device: DeviceCredentials, last_req_dt: str
    ) -> CallOutcome:
        return self._send("selectTrnsPurchaseSalesList", device, {"lastReqDt": last_req_dt})

    def insert_purchase(self, device: DeviceCredentials, body: Mapping[str, Any]) -> CallOutcome:
        return self._send("insertTrnsPurchase", device, body)

    # -- 8 stock ----------------------------------------------------------------------------
    def select_stock_move_list(self, device: DeviceCredentials, last_req_dt: str) -> CallOutcome:
        return self._send("selectStockMoveList", device, {"lastReqDt": last_req_dt})

    def insert_stock_io(self, device: DeviceCredentials, body: Mapping[str, Any]) -> CallOutcome:
        """A stock movement; send a sale's stock-out (sarTyCd 11) only after the sale."""
        return self._send("insertStockIO", device, body)

    def save_stock_master(self, device: DeviceCredentials, body: Mapping[str, Any]) -> CallOutcome:
        """Remaining quantity; must equal KRA's running balance of accepted stock IO."""
        return self._send("saveStockMaster", device, body)
