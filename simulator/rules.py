"""KRA's decisions: one method per OSCU write endpoint, from (branch, body) to an Answer.

Lookups live in :mod:`simulator.lookups`; :class:`Rules` routes to both.

Pure with respect to I/O: rules read :class:`SimulatorState` and say what to record; the
:class:`~simulator.core.Simulator` appends the record to the ledger and then folds it
into the state. Field shapes and amounts come from the simulator's own reading of the spec
(:mod:`simulator.validate`, never ``schemas``); what
only KRA can know lives here: devices and keys, numbering, registered items, accepted
originals, the stock ledger and the configured tax rates.

Order of checks on a write (the first failure answers): headers (900/901) -> a JSON object
(911) -> body tin/bhfId/cmcKey match the headers (910) -> field shapes (910) -> numbering
(921 repeat, 910 gap) -> references (items, credit-note original and its buyer PIN) -> host
body rules (itemCd, pkg, services in stock: :mod:`simulator.body_rules`) -> amounts
and taxRtX (910) -> stock (922/910, and "not in your stock master" when
``stock_before_sale``) -> trader invoice reuse (994).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from simulator import body_rules, validate
from simulator.answers import Answer, fail, invalid, ok
from simulator.clock import d14
from simulator.lookups import Lookups
from simulator.numbering import (
    SequenceVerdict,
    check_sequence,
    sequence_message,
    sign_receipt,
)
from simulator.options import SimulatorOptions
from simulator.state import (
    SALE_OUT_TYPE,
    Branch,
    SimulatorState,
    line_quantities,
    qty,
)

INIT = "selectInitOsdcInfo"
SALE = "saveTrnsSalesOsdc"
STOCK_IO = "insertStockIO"
STOCK_MASTER = "saveStockMaster"
INVOICE_DETAILS = "selectInvoiceDetails"


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")


class Rules:
    """Every endpoint's rule; one instance per running simulator."""

    def __init__(self, state: SimulatorState, options: SimulatorOptions) -> None:
        self.state = state
        self.options = options
        self.lookups = Lookups(state, options)
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
            "selectCodeList": self.lookups.select_code_list,
            "selectItemClsList": self.lookups.select_item_cls_list,
            "selectNoticeList": self.lookups.select_notice_list,
            "selectItemList": self.lookups.select_item_list,
            "selectBhfList": self.lookups.select_bhf_list,
            "selectCustomer": self.lookups.select_customer,
            "selectImportItemList": self.lookups.select_import_item_list,
            "selectTrnsPurchaseSalesList": self.lookups.select_purchase_sales_list,
            "selectStockMoveList": self.lookups.select_stock_move_list,
            INVOICE_DETAILS: self.lookups.select_invoice_details,
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
        mismatch = self._body_credentials_mismatch(branch, body)
        if mismatch is not None:
            return mismatch
        problems = validate.field_errors(endpoint, body)
        if problems:
            return invalid(validate.describe(problems))
        answer = self._handlers[endpoint](branch, body)
        if answer.record is not None:
            answer.record["endpoint"] = endpoint
        return answer

    def _body_credentials_mismatch(self, branch: Branch, body: dict[str, Any]) -> Answer | None:
        """910 when the body's ``tin``/``bhfId``/``cmcKey`` (request fields in the spec's
        tables; some clients send them besides the headers) differ from the headers."""
        for name, expected in (("tin", branch.tin), ("bhfId", branch.bhf_id)):
            sent = body.get(name)
            if sent is not None and sent != expected:
                return invalid(f"{name}: body value {sent!r} does not match the {name} header")
        key = body.get("cmcKey")
        device = self.state.devices[(branch.tin, branch.bhf_id)]
        if key is not None and not (
            isinstance(key, str) and hmac.compare_digest(key.encode(), device.cmc_key.encode())
        ):
            return invalid("cmcKey: body value does not match the cmcKey header")
        return None

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
        branch = self.state.branch(tin, bhf_id)
        if self.options.init_key_at_root:
            # KRA's sandbox (per the published SDK): the key beside resultCd, not in info
            answer = ok({"info": {k: v for k, v in info.items() if k != "cmcKey"}})
            answer.root = {"cmcKey": info["cmcKey"]}
        else:
            answer = ok({"info": info})
        answer.record = self._record(INIT, branch, body, {"info": info})  # the ledger keeps it
        return answer

    # -- writes --------------------------------------------------------------------------

    def plain_write(self, branch: Branch, body: dict[str, Any]) -> Answer:
        """Writes KRA only stores (customers, users, insurers, purchases, imports, BOMs)."""
        answer = ok()
        answer.record = self._record("", branch, body, None)
        return answer

    def save_item(self, branch: Branch, body: dict[str, Any]) -> Answer:
        """Upsert by itemCd on this branch (selectItemList serves it back)."""
        problem = body_rules.item_code_problem(self.options, self.state, branch.tin, body)
        if problem is not None:
            return invalid(problem)
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
            or self._body_rule(body_rules.pkg_problem(self.options, body))
            or self._amount_problem(SALE, body)
            or self._credit_note_problem(branch, body)
            or self._body_rule(body_rules.stock_before_sale_problem(self.options, branch, body))
        )
        if problem is not None:
            return problem
        trd = str(body["trdInvcNo"])
        previous = self._trader_invoice_holder(branch, trd)
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

    def _trader_invoice_holder(self, branch: Branch, trd: str) -> tuple[str, int] | None:
        """(bhfId, invcNo) of an accepted sale that already used ``trd`` in the rule's scope."""
        scope = self.options.trd_invc_no_scope
        holders = self.state.trader_invoices.get((branch.tin, trd), {})
        if scope == "branch" and branch.bhf_id in holders:
            return branch.bhf_id, holders[branch.bhf_id]
        if scope == "tin" and holders:
            bhf_id = min(holders)
            return bhf_id, holders[bhf_id]
        return None

    def _unregistered_item(self, branch: Branch, body: dict[str, Any]) -> Answer | None:
        for index, line in enumerate(body.get("itemList") or ()):
            item_cd = line.get("itemCd")
            if item_cd is not None and str(item_cd) not in branch.items:
                return invalid(
                    f"itemList.{index}.itemCd: item {item_cd} is not registered on branch"
                    f" {branch.bhf_id} (saveItem first)"
                )
        return None

    @staticmethod
    def _body_rule(problem: str | None) -> Answer | None:
        return None if problem is None else invalid(problem)

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
        return self._body_rule(body_rules.buyer_pin_problem(self.options, body, original.body))

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
        codes = [
            (f"itemList.{index}.itemCd", str(line.get("itemCd")))
            for index, line in enumerate(body.get("itemList") or ())
            if line.get("itemCd")
        ]
        problem = (
            self._unregistered_item(branch, body)
            or self._body_rule(body_rules.service_stock_problem(self.options, branch, codes))
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
        service = body_rules.service_stock_problem(self.options, branch, [("itemCd", item_cd)])
        if service is not None:
            return invalid(service)
        balance = branch.balance.get(item_cd)
        if balance is None:
            return invalid(f"Stock IO is empty for itemCd {item_cd}: send insertStockIO first")
        sent = qty(body["rsdQty"])
        if sent != balance:
            return invalid(f"rsdQty mismatch. Expected: {_num(balance)} but found: {_num(sent)}")
        answer = ok()
        answer.record = self._record(STOCK_MASTER, branch, body, None)
        return answer
