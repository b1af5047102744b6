"""KRA's lookups: what each ``select*`` endpoint returns from the simulator's memory.

Read-only over :class:`SimulatorState`; ``001`` whenever there is nothing (new) to return, as
KRA answers incremental lookups whose ``lastReqDt`` is recent.
"""

from __future__ import annotations

from typing import Any

from simulator import catalog
from simulator.answers import Answer, empty, invalid, ok
from simulator.clock import d8, d14_to_detail
from simulator.options import SimulatorOptions
from simulator.state import Branch, SimulatorState, at_to_d14


class Lookups:
    """One method per lookup endpoint, each ``(branch, body) -> Answer``."""

    def __init__(self, state: SimulatorState, options: SimulatorOptions) -> None:
        self.state = state
        self.options = options
        #: Notices published at run time through ``POST /__admin/notices`` (tests, demos).
        self.extra_notices: list[dict[str, Any]] = []

    @staticmethod
    def _since(body: dict[str, Any]) -> str:
        return str(body.get("lastReqDt") or "00000000000000")

    @staticmethod
    def _rows(key: str, rows: list[dict[str, Any]]) -> Answer:
        return ok({key: rows}) if rows else empty()

    def select_code_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        if self._since(body) >= catalog.CATALOGUE_DT:
            return empty()
        return self._rows("clsList", catalog.code_classes(self.options.tax_rates))

    def select_item_cls_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        if self._since(body) >= catalog.CATALOGUE_DT:
            return empty()
        return self._rows("itemClsList", [dict(row) for row in catalog.ITEM_CLASSES])

    def select_notice_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        since = self._since(body)
        notices = [*catalog.NOTICES, *self.extra_notices]
        return self._rows("noticeList", [n for n in notices if str(n["regDt"]) > since])

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
            return empty()
        row = {"tin": wanted, "taxprNm": f"SIMULATED TAXPAYER {wanted}", "taxprSttsCd": "A",
               "prvncNm": "NAIROBI", "dstrtNm": "WESTLANDS", "sctrNm": "PARKLANDS",
               "locDesc": None}  # fmt: skip
        return self._rows("custList", [row])

    def select_import_item_list(self, branch: Branch, body: dict[str, Any]) -> Answer:
        return empty()  # no customs declarations in a simulation

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
            return empty()
        row = dict(sale.body)
        receipt = dict(sale.body.get("receipt") or {})
        receipt.update(sale.receipt)
        receipt["sdcDateTime"] = d14_to_detail(str(sale.receipt["sdcDateTime"]))
        row["receipt"] = receipt
        row.setdefault("custTin", None)
        row["salesDt"] = row.get("salesDt") or d8()
        return ok({"salesList": [row]})
