"""KRA's decisions: one function per OSCU endpoint, from (device, body) to an :class:`Answer`.

Pure with respect to I/O: rules read :class:`SimulatorState` and say what to record; the
:class:`~worker.simulator.core.Simulator` appends the record to the ledger and then folds it
into the state. Field shapes come from ``schemas`` (:mod:`worker.simulator.validate`); what
only KRA can know lives here: devices and keys, numbering, registered items, accepted
originals, the stock ledger and the configured tax rates.

Order of checks on a write (the first failure answers): headers (900/901) -> JSON (911/910)
-> body tin/bhfId match the headers -> field shapes (910) -> numbering (921 repeat, 910 gap)
-> references (items, credit-note original) -> amounts and taxRtX (910) -> stock (922/910) ->
trader invoice reuse (994).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from worker.simulator import catalog, validate
from worker.simulator.clock import d8, d14, d14_to_detail
from worker.simulator.numbering import (
    SequenceVerdict,
    check_sequence,
    sequence_message,
    sign_receipt,
)
from worker.simulator.options import SimulatorOptions
from worker.simulator.state import (
    SALE_OUT_TYPE,
    Branch,
    SimulatorState,
    at_to_d14,
    line_quantities,
    qty,
)

INIT = "selectInitOsdcInfo"
SALE = "saveTrnsSalesOsdc"
STOCK_IO = "insertStockIO"
STOCK_MASTER = "saveStockMaster"
INVOICE_DETAILS = "selectInvoiceDetails"

OK_MSG = "It is succeeded"
EMPTY_MSG = "There is no search result"


@dataclass(slots=True)
class Answer:
    """One OSCU answer, plus the ledger record to write before sending it (accepted writes)."""

    result_cd: str
    message: str
    data: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    #: 200 for every OSCU answer; 404 for a path (or feature) this host does not serve.
    http_status: int = 200


def ok(data: dict[str, Any] | None = None) -> Answer:
    return Answer("000", OK_MSG, data)


def fail(code: str, message: str) -> Answer:
    return Answer(code, message)


def invalid(message: str) -> Answer:
    return Answer("910", message)


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")


class Rules:
    """Every endpoint's rule; one instance per running simulator."""

    def __init__(self, state: SimulatorState, options: SimulatorOptions) -> None:
        self.state = state
        self.options = options
        self._handlers: dict[str, Callable[[Branch, dict[str, Any]], Answer]] = {
            "saveItem": self.save_item,
            SALE: self.save_sale,
            STOCK_IO: self.insert_stock_io,
            STOCK_MASTER: self.save_stock_master,
            "saveItemComposition": self.plain_write,
            "saveBhfCustomer": self.plain_write,
            "saveBhfUser": self.plain_write,
            "saveBhfInsurance": self.plain_write,
            "insertTrnsPurchase": self.plain_write,
            "updateImportItem": self.plain_write,
            "selectCodeList": self.select_code_list,
            "selectItemClsList": self.select_item_cls_list,
            "selectNoticeList": self.select_notice_list,
            "selectItemList": self.select_item_list,
            "selectBhfList": self.select_bhf_list,
            "selectCustomer": self.select_customer,
            "selectImportItemList": self.select_import_item_list,
            "selectTrnsPurchaseSalesList": self.select_purchase_sales_list,
            "selectStockMoveList": self.select_stock_move_list,
            INVOICE_DETAILS: self.select_invoice_details,
        }
        self.writes = frozenset(
            name for name, fn in self._handlers.items() if not name.startswith("select")
        )

    @property
    def endpoints(self) -> frozenset[str]:
        return frozenset(self._handlers) | {INIT}

    # -- entry ---------------------------------------------------------------------------

    def not_served(self, endpoint: str) -> Answer | None:
        """HTTP 404 for a feature this run switched off (selectInvoiceDetails)."""
        if endpoint == INVOICE_DETAILS and not self.options.invoice_details:
            return Answer("999", "selectInvoiceDetails is not served by this host", None, None, 404)
        return None

    def dispatch(self, endpoint: str, branch: Branch, body: Any) -> Answer:
        """Decide one authenticated request whose JSON body is already parsed."""
        if not isinstance(body, dict):
            return invalid("body: must be a JSON object")
        for name, expected in (("tin", branch.tin), ("bhfId", branch.bhf_id)):
            sent = body.get(name)
            if sent is not None and sent != expected:
                return invalid(f"{name}: body value {sent!r} does not match the {name} header")
        problems = validate.field_errors(endpoint, body)
        if problems:
            return invalid(validate.describe(problems))
        answer = self._handlers[endpoint](branch, body)
        if answer.record is not None:
            answer.record["endpoint"] = endpoint
        return answer

    def authenticate(self, headers: Mapping[str, str]) -> Branch | Answer:
        """900 without all three headers, 901 for an unknown device or a wrong key."""
        tin, bhf_id, key = headers.get("tin"), headers.get("bhfid"), headers.get("cmckey")
        missing = [n for n, v in (("tin", tin), ("bhfId", bhf_id), ("cmcKey", key)) if not v]
        if missing or tin is None or bhf_id is None or key is None:
            return fail("900", f"No header information: missing {', '.join(missing)}")
        device = self.state.devices.get((tin, bhf_id))
        if device is None or not hmac.compare_digest(device.cmc_key.encode(), key.encode()):
            return fail("901", "It is not a valid device (unknown tin/bhfId or wrong cmcKey)")
        return self.state.branch(tin, bhf_id)

    def _record(self, endpoint: str, branch: Branch, body: Any, data: Any) -> dict[str, Any]:
        return {
            "kind": "write",
            "endpoint": endpoint,
            "tin": branch.tin,
            "bhfId": branch.bhf_id,
            "body": body,
            "data": data,
        }

    # -- devices -------------------------------------------------------------------------

    def init_device(self, body: Any) -> Answer:
        if not isinstance(body, dict):
            return invalid("body: must be a JSON object")
        problems = validate.field_errors(INIT, body)
        if problems:
            return invalid(validate.describe(problems))
        tin, bhf_id, serial = str(body["tin"]), str(body["bhfId"]), str(body["dvcSrlNo"])
        approved = self.options.approved_serials
        if approved is not None and serial not in approved:
            return fail("905", "Only OSCU device can be verified: serial is not approved")
        if (tin, bhf_id) in self.state.devices:
            return fail("902", "This device is installed")
        number = self.state.devices_issued + 1
        info = {
            "tin": tin,
            "taxprNm": f"SIMULATED TAXPAYER {tin}",
            "bsnsActv": "Retail",
            "bhfId": bhf_id,
            "bhfNm": "Headquarter" if bhf_id == "00" else f"Branch {bhf_id}",
            "bhfOpenDt": "20230101",
            "prvncNm": "NAIROBI",
            "dstrtNm": "WESTLANDS",
            "sctrNm": "PARKLANDS",
            "locDesc": "Simulated location",
            "hqYn": "Y" if bhf_id == "00" else "N",
            "mgrNm": "Simulated Manager",
            "mgrTelNo": "0700000000",
            "mgrEmail": "manager@example.invalid",
            "dvcId": f"99999{number:011d}",
            "sdcId": f"KRACU01{number:08d}",
            "mrcNo": f"WIS01{number:06d}",
            "cmcKey": secrets.token_hex(32),
        }
        answer = ok({"info": info})
        branch = self.state.branch(tin, bhf_id)
        answer.record = self._record(INIT, branch, body, answer.data)
        return answer

    # -- writes --------------------------------------------------------------------------

    def plain_write(self, branch: Branch, body: dict[str, Any]) -> Answer:
        """Writes KRA only stores (customers, users, insurers, purchases, imports, BOMs)."""
        answer = ok()
        answer.record = self._record("", branch, body, None)
        return answer

    def save_item(self, branch: Branch, body: dict[str, Any]) -> Answer:
        """Upsert by itemCd on this branch (selectItemList serves it back)."""
        answer = ok()
        answer.record = self._record("saveItem", branch, body, None)
        return answer

    def save_sale(self, branch: Branch, body: dict[str, Any]) -> Answer:
        invc_no = int(body["invcNo"])
        verdict = check_sequence(
            invc_no, branch.last_invc_no, tolerate_gaps=self.options.tolerate_gaps,
            used=branch.sales.keys() if self.options.tolerate_gaps else None,
        )  # fmt: skip
        if verdict is SequenceVerdict.REPEAT:
            return fail("921", f"Sales data already declared: invcNo {invc_no} cannot be received")
        if verdict is SequenceVerdict.OUT_OF_ORDER:
            return invalid(
                sequence_message(
                    "invcNo", invc_no, branch.last_invc_no, tolerate_gaps=self.options.tolerate_gaps
                )
            )
        problem = (
            self._unregistered_item(branch, body)
            or self._amount_problem(SALE, body)
            or self._credit_note_problem(branch, body)
        )
        if problem is not None:
            return problem
        trd = str(body["trdInvcNo"])
        previous = self.state.trader_invoices.get((branch.tin, trd))
        if previous is not None:
            return fail(
                "994",
                f"Overlapped data: trdInvcNo {trd} was already accepted as invcNo {previous[1]}"
                f" on branch {previous[0]}",
            )
        rcpt_ty = str(body["rcptTyCd"])
        tot_rcpt_no = branch.tot_rcpt_no + 1
        device = self.state.devices[(branch.tin, branch.bhf_id)]
        signature = sign_receipt(device.cmc_key, branch.tin, branch.bhf_id, invc_no, tot_rcpt_no)
        data = {
            "curRcptNo": branch.rcpt_counters.get(rcpt_ty, 0) + 1,
            "totRcptNo": tot_rcpt_no,
            "intrlData": signature.intrl_data,
            "rcptSign": signature.rcpt_sign,
            "sdcDateTime": d14(),
        }
        answer = ok(data)
        answer.record = self._record(SALE, branch, body, data)
        return answer

    def _unregistered_item(self, branch: Branch, body: dict[str, Any]) -> Answer | None:
        for index, line in enumerate(body.get("itemList") or ()):
            item_cd = line.get("itemCd")
            if item_cd is not None and str(item_cd) not in branch.items:
                return invalid(
                    f"itemList.{index}.itemCd: item {item_cd} is not registered on branch"
                    f" {branch.bhf_id} (saveItem first)"
                )
        return None

    def _amount_problem(self, endpoint: str, body: dict[str, Any]) -> Answer | None:
        problem = validate.amount_problem(endpoint, body, self.options)
        return None if problem is None else invalid(problem)

    def _credit_note_problem(self, branch: Branch, body: dict[str, Any]) -> Answer | None:
        if body.get("rcptTyCd") != "R":
            return None
        org = body.get("orgInvcNo")
        original = branch.sales.get(int(org)) if org is not None else None
        if original is None or original.rcpt_ty_cd != "S":
            return invalid(
                f"orgInvcNo: {org} does not exist as an accepted sale on branch {branch.bhf_id}"
            )
        for field in ("rfdRsnCd", "rfdDt"):
            if not body.get(field):
                return invalid(f"{field}: required for a credit note (rcptTyCd R)")
        return None

    def insert_stock_io(self, branch: Branch, body: dict[str, Any]) -> Answer:
        sar_no = int(body["sarNo"])
        verdict = check_sequence(
            sar_no, branch.last_sar_no, tolerate_gaps=self.options.tolerate_gaps,
            used=branch.sar_nos if self.options.tolerate_gaps else None,
        )  # fmt: skip
        if verdict is SequenceVerdict.REPEAT:
            return fail("921", f"Stock data already declared: sarNo {sar_no} cannot be received")
        if verdict is SequenceVerdict.OUT_OF_ORDER:
            return invalid(
                sequence_message(
                    "sarNo", sar_no, branch.last_sar_no, tolerate_gaps=self.options.tolerate_gaps
                )
            )
        problem = (
            self._unregistered_item(branch, body)
            or self._amount_problem(STOCK_IO, body)
            or self._sale_out_problem(branch, body)
        )
        if problem is not None:
            return problem
        answer = ok()
        answer.record = self._record(STOCK_IO, branch, body, None)
        return answer

    def _sale_out_problem(self, branch: Branch, body: dict[str, Any]) -> Answer | None:
        """A type-11 stock-out may only release what accepted sales sold and nobody released."""
        if str(body.get("sarTyCd")) != SALE_OUT_TYPE:
            return None
        for index, line in enumerate(body.get("itemList") or ()):
            if not line.get("itemCd"):
                return invalid(f"itemList.{index}.itemCd: required on a stock-out of type 11")
        for item_cd, wanted in line_quantities(body).items():
            available = branch.unreleased.get(item_cd, Decimal(0))
            if wanted > available:
                index = next(
                    i for i, line in enumerate(body["itemList"]) if line.get("itemCd") == item_cd
                )
                return fail(
                    "922",
                    f"itemList.{index}.itemCd: stock-out 11 of item {item_cd} (qty {_num(wanted)})"
                    f" can be received only after the sales data: accepted sales leave"
                    f" {_num(available)} unreleased",
                )
        return None

    def save_stock_master(self, branch: Branch, body: dict[str, Any]) -> Answer:
        item_cd = str(body["itemCd"])
        if item_cd not in branch.items:
            return invalid(f"itemCd: item {item_cd} is not registered on branch {branch.bhf_id}")
        balance = branch.balance.get(item_cd)
        if balance is None:
            return invalid(f"Stock IO is empty for itemCd {item_cd}: send insertStockIO first")
        sent = qty(body["rsdQty"])
        if sent != balance:
            return invalid(f"rsdQty mismatch. Expected: {_num(balance)} but found: {_num(sent)}")
        answer = ok()
        answer.record = self._record(STOCK_MASTER, branch, body, None)
        return answer

    # -- lookups -------------------------------------------------------------------------

    @staticmethod
    def _since(body: dict[str, Any]) -> str:
        return str(body.get("lastReqDt") or "00000000000000")

    @staticmethod
    def _rows(key: str, rows: list[dict[str, Any]]) -> Answer:
        return ok({key: rows}) if rows else Answer("001", EMPTY_MSG)

    def select_code_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        if self._since(body) >= catalog.CATALOGUE_DT:
            return Answer("001", EMPTY_MSG)
        return self._rows("clsList", catalog.code_classes(self.options.tax_rates))

    def select_item_cls_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        if self._since(body) >= catalog.CATALOGUE_DT:
            return Answer("001", EMPTY_MSG)
        return self._rows("itemClsList", [dict(row) for row in catalog.ITEM_CLASSES])

    def select_notice_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        since = self._since(body)
        return self._rows("noticeList", [n for n in catalog.NOTICES if n["regDt"] > since])

    def select_item_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        since = self._since(body)
        rows = [dict(item) for item in branch.items.values() if str(item["modDt"]) > since]
        return self._rows("itemList", rows)

    def select_bhf_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        rows = [
            {
                "tin": device.tin,
                "bhfId": device.bhf_id,
                "bhfNm": device.info.get("bhfNm"),
                "bhfSttsCd": "01",
                "prvncNm": device.info.get("prvncNm"),
                "dstrtNm": device.info.get("dstrtNm"),
                "sctrNm": device.info.get("sctrNm"),
                "locDesc": device.info.get("locDesc"),
                "mgrNm": device.info.get("mgrNm"),
                "mgrTelNo": device.info.get("mgrTelNo"),
                "mgrEmail": device.info.get("mgrEmail"),
                "hqYn": device.info.get("hqYn"),
            }
            for (tin, _), device in sorted(self.state.devices.items())
            if tin == branch.tin
        ]
        return self._rows("bhfList", rows)

    def select_customer(self, branch: Branch, body: dict[str, Any]) -> Answer:
        """Known PINs: registered taxpayers (devices) and buyers on accepted sales."""
        wanted = str(body.get("custmTin") or "")
        known = {tin for tin, _ in self.state.devices}
        known.update(
            str(sale.body.get("custTin"))
            for other in self.state.branches.values()
            for sale in other.sales.values()
            if sale.body.get("custTin")
        )
        if wanted not in known:
            return Answer("001", EMPTY_MSG)
        row = {"tin": wanted, "taxprNm": f"SIMULATED TAXPAYER {wanted}", "taxprSttsCd": "A",
               "prvncNm": "NAIROBI", "dstrtNm": "WESTLANDS", "sctrNm": "PARKLANDS",
               "locDesc": None}  # fmt: skip
        return self._rows("custList", [row])

    def select_import_item_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        return Answer("001", EMPTY_MSG)  # no customs declarations in a simulation

    def select_purchase_sales_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        """Accepted sales other taxpayers made to this branch's PIN (its purchases)."""
        since = self._since(body)
        rows: list[dict[str, Any]] = []
        for (tin, bhf_id), seller in sorted(self.state.branches.items()):
            if tin == branch.tin:
                continue
            device = self.state.devices.get((tin, bhf_id))
            for sale in seller.sales.values():
                if sale.body.get("custTin") != branch.tin or at_to_d14(sale.at) <= since:
                    continue
                row = {k: v for k, v in sale.body.items() if k not in ("receipt", "invcNo")}
                row.update(spplrTin=tin, spplrBhfId=bhf_id, spplrInvcNo=sale.invc_no,
                           spplrNm=f"SIMULATED TAXPAYER {tin}",
                           spplrSdcId=device.info.get("sdcId") if device else None)  # fmt: skip
                rows.append(row)
        return self._rows("saleList", rows)

    def select_stock_move_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        """Type-13 transfers other branches of this PIN sent to this branch."""
        rows: list[dict[str, Any]] = []
        for (tin, bhf_id), sender in sorted(self.state.branches.items()):
            if tin != branch.tin or bhf_id == branch.bhf_id:
                continue
            for move in sender.stock_moves:
                if move.get("sarTyCd") == "13" and move.get("custBhfId") == branch.bhf_id:
                    row = dict(move)
                    row.update(custTin=tin, custBhfId=bhf_id)
                    rows.append(row)
        return self._rows("stockList", rows)

    def select_invoice_details(self, branch: Branch, body: dict[str, Any]) -> Answer:
        """The stored sale and its receipt (the non-spec lookup Odoo uses, reference §2.2)."""
        raw = body.get("invcNo")
        try:
            invc_no = int(raw) if raw is not None and not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            invc_no = None
        if invc_no is None:
            return invalid("invcNo: an integer invoice number is required")
        sale = branch.sales.get(invc_no)
        if sale is None:
            return Answer("001", EMPTY_MSG)
        row = dict(sale.body)
        receipt = dict(sale.body.get("receipt") or {})
        receipt.update(sale.receipt)
        receipt["sdcDateTime"] = d14_to_detail(str(sale.receipt["sdcDateTime"]))
        row["receipt"] = receipt
        row.setdefault("custTin", None)
        row["salesDt"] = row.get("salesDt") or d8()
        return ok({"salesList": [row]})
