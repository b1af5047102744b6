"""What KRA remembers, per device and per branch, rebuilt from the ledger at every start.

The state changes only through :meth:`SimulatorState.apply`, which takes a ledger record.
The server applies a record right after appending it, and a restart replays the file
through the same method, so a restarted simulator is the one that was killed. Nothing here
validates: the rules in :mod:`simulator.rules` decide what gets recorded.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

#: sarTyCd direction (code class 12): 01-06 add to the balance, 11-16 take from it.
STOCK_IN_TYPES = frozenset({"01", "02", "03", "04", "05", "06"})
STOCK_OUT_TYPES = frozenset({"11", "12", "13", "14", "15", "16"})
#: The stock-out that delivers goods of a signed sale.
SALE_OUT_TYPE = "11"

BranchKey = tuple[str, str]


def qty(value: Any) -> Decimal:
    """An exact quantity from a JSON number or numeric string (floats via their repr)."""
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def at_to_d14(at: Any) -> str:
    """A record's ISO ``at`` (Kenya time) as D14, for ``lastReqDt`` filters."""
    text = str(at or "")
    digits = "".join(ch for ch in text[:19] if ch.isdigit())
    return digits if len(digits) == 14 else "00000000000000"


def line_quantities(body: dict[str, Any]) -> dict[str, Decimal]:
    """Sum of ``qty`` per ``itemCd`` over a body's ``itemList`` (lines without a code skipped)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in body.get("itemList") or ():
        if isinstance(line, dict) and line.get("itemCd"):
            totals[str(line["itemCd"])] += qty(line.get("qty", 0))
    return dict(totals)


@dataclass(slots=True)
class Device:
    tin: str
    bhf_id: str
    serial: str
    cmc_key: str
    info: dict[str, Any]


@dataclass(slots=True)
class Sale:
    invc_no: int
    rcpt_ty_cd: str
    body: dict[str, Any]
    receipt: dict[str, Any]
    at: str


@dataclass(slots=True)
class Branch:
    """One (tin, bhfId): its items, numbering, receipts and stock ledger."""

    tin: str
    bhf_id: str
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_invc_no: int = 0
    sales: dict[int, Sale] = field(default_factory=dict)
    #: curRcptNo per receipt type (S, R) and totRcptNo across types
    rcpt_counters: dict[str, int] = field(default_factory=dict)
    tot_rcpt_no: int = 0
    last_sar_no: int = 0
    sar_nos: set[int] = field(default_factory=set)
    stock_moves: list[dict[str, Any]] = field(default_factory=list)
    #: running balance per item from accepted movements
    balance: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    #: quantity sold in accepted sales (S) not yet released by a type-11 movement
    unreleased: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    stock_masters: int = 0
    credit_notes: int = 0
    other_writes: int = 0

    @property
    def invc_nos(self) -> set[int]:
        return set(self.sales)

    def counts(self) -> dict[str, int]:
        return {
            "sales": len(self.sales) - self.credit_notes,
            "credit_notes": self.credit_notes,
            "stock_ios": len(self.stock_moves),
            "stock_masters": self.stock_masters,
            "items": len(self.items),
            "last_invc_no": self.last_invc_no,
            "last_sar_no": self.last_sar_no,
        }


class SimulatorState:
    """All devices and branches, plus the per-taxpayer trader invoice register."""

    def __init__(self) -> None:
        self.devices: dict[BranchKey, Device] = {}
        self.branches: dict[BranchKey, Branch] = {}
        #: (tin, trdInvcNo) -> {bhfId: invcNo} of the accepted sales that used it (one per
        #: branch under the ``branch`` rule; a ledger may hold more under ``off``)
        self.trader_invoices: dict[tuple[str, str], dict[str, int]] = {}
        self.records = 0
        self.devices_issued = 0

    def branch(self, tin: str, bhf_id: str) -> Branch:
        key = (tin, bhf_id)
        found = self.branches.get(key)
        if found is None:
            found = self.branches[key] = Branch(tin=tin, bhf_id=bhf_id)
        return found

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ledger record into the state (live or during replay)."""
        self.records += 1
        if record.get("kind") == "start":
            return  # the rules in force are the server's business, not the state's
        endpoint = record["endpoint"]
        tin, bhf_id = record["tin"], record["bhfId"]
        body: dict[str, Any] = record.get("body") or {}
        data: dict[str, Any] | None = record.get("data")
        if endpoint == "selectInitOsdcInfo":
            info = (data or {})["info"]
            self.devices[(tin, bhf_id)] = Device(
                tin, bhf_id, str(body.get("dvcSrlNo")), info["cmcKey"], info
            )
            self.devices_issued += 1
            self.branch(tin, bhf_id)
            return
        branch = self.branch(tin, bhf_id)
        if endpoint == "saveItem":
            row = dict(body)
            row.update(tin=tin, regBhfId=bhf_id, rraModYn="N", modDt=at_to_d14(record.get("at")))
            branch.items[str(body["itemCd"])] = row
        elif endpoint == "saveTrnsSalesOsdc":
            self._apply_sale(branch, body, data or {}, str(record.get("at", "")))
        elif endpoint == "insertStockIO":
            self._apply_stock_io(branch, body)
        elif endpoint == "saveStockMaster":
            branch.stock_masters += 1
        else:
            branch.other_writes += 1

    def _apply_sale(
        self, branch: Branch, body: dict[str, Any], data: dict[str, Any], at: str
    ) -> None:
        invc_no = int(body["invcNo"])
        rcpt_ty = str(body.get("rcptTyCd", "S"))
        branch.sales[invc_no] = Sale(invc_no, rcpt_ty, body, data, at)
        branch.last_invc_no = max(branch.last_invc_no, invc_no)
        branch.rcpt_counters[rcpt_ty] = int(data.get("curRcptNo", 0))
        branch.tot_rcpt_no = int(data.get("totRcptNo", branch.tot_rcpt_no + 1))
        if rcpt_ty == "R":
            branch.credit_notes += 1
        else:
            for item_cd, amount in line_quantities(body).items():
                branch.unreleased[item_cd] += amount
        trd = body.get("trdInvcNo")
        if trd is not None:
            holders = self.trader_invoices.setdefault((branch.tin, str(trd)), {})
            holders.setdefault(branch.bhf_id, invc_no)

    def _apply_stock_io(self, branch: Branch, body: dict[str, Any]) -> None:
        sar_no = int(body["sarNo"])
        branch.sar_nos.add(sar_no)
        branch.last_sar_no = max(branch.last_sar_no, sar_no)
        branch.stock_moves.append(body)
        sar_ty = str(body.get("sarTyCd"))
        sign = 1 if sar_ty in STOCK_IN_TYPES else -1 if sar_ty in STOCK_OUT_TYPES else 0
        for item_cd, amount in line_quantities(body).items():
            branch.balance[item_cd] += sign * amount
            if sar_ty == SALE_OUT_TYPE:
                branch.unreleased[item_cd] -= amount

    def summary(self) -> dict[str, Any]:
        """Counters for ``/__admin/stats`` and the test handle."""
        return {
            "records": self.records,
            "devices": len(self.devices),
            "branches": {f"{t}/{b}": br.counts() for (t, b), br in sorted(self.branches.items())},
        }
