"""Check a ledger against the invariants KRA would hold the relay to (README, invariants 2
and 3).

Independent of :mod:`simulator.rules` on purpose: it re-derives every rule from the
records alone, so a bug in the live checks cannot also hide in the verdict. Checks, per
branch (tin, bhfId), in record order:

- ``invcNo`` runs 1..N with no gap or repeat (under ``tolerate_gaps``: strictly increasing);
  the same for ``sarNo``;
- every write comes from an initialised device;
- a credit note's ``orgInvcNo`` is a sale accepted earlier on the branch;
- no two accepted sales share a ``trdInvcNo`` within the run's ``trd_invc_no_scope``
  (branch, or every branch of a tin; ledgers written before the option existed: tin);
- a type-11 stock-out releases only quantities that earlier accepted sales sold and no
  earlier type-11 movement released;
- every ``saveStockMaster.rsdQty`` equals the item's running balance at that point.

Order, as these checks see it: sales and credit notes in number order; a stock-out after the
sales it releases; a stock master after every movement it reflects. Nothing requires one
stock master per movement: the relay may leave out a stock master whose balance a later one
reports (``superseded``), and the report's ``balances`` and ``stock_masters`` (the last
``rsdQty`` sent per item) let a caller check that what KRA ends with is what the relay's
outbox says.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from simulator.ledger import LedgerError, read_records
from simulator.state import (
    SALE_OUT_TYPE,
    STOCK_IN_TYPES,
    STOCK_OUT_TYPES,
    line_quantities,
    qty,
)


@dataclass
class _Branch:
    last_invc: int = 0
    last_sar: int = 0
    invc_nos: set[int] = field(default_factory=set)
    sar_nos: set[int] = field(default_factory=set)
    sale_invc_nos: set[int] = field(default_factory=set)
    unreleased: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    balance: dict[str, Decimal] = field(default_factory=dict)
    last_master: dict[str, Decimal] = field(default_factory=dict)
    items: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("sales", "credit_notes", "stock_ios", "stock_masters", "items", "other_writes"), 0
        )
    )


@dataclass
class VerifyReport:
    """The verdict: ``ok`` when no violation was found."""

    records: int = 0
    violations: list[str] = field(default_factory=list)
    branches: dict[str, dict[str, int]] = field(default_factory=dict)
    #: per branch ("tin/bhfId"): each item's balance after every accepted movement
    balances: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    #: per branch: the rsdQty of each item's last accepted stock master
    stock_masters: dict[str, dict[str, Decimal]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary_lines(self) -> list[str]:
        lines = [f"ledger records: {self.records}, branches: {len(self.branches)}"]
        for key, counts in sorted(self.branches.items()):
            lines.append(
                f"  {key}: sales={counts['sales']} credit_notes={counts['credit_notes']}"
                f" stock_ios={counts['stock_ios']} stock_masters={counts['stock_masters']}"
                f" items={counts['items']} other_writes={counts['other_writes']}"
            )
        return lines


class _Verifier:
    def __init__(self) -> None:
        self.report = VerifyReport()
        self.branches: dict[tuple[str, str], _Branch] = defaultdict(_Branch)
        self.devices: set[tuple[str, str]] = set()
        self.trader_invoices: dict[tuple[str, str], str] = {}
        self.tolerate_gaps = False
        self.trd_invc_no_scope = "tin"

    def violation(self, record: dict[str, Any], text: str) -> None:
        where = f"seq {record.get('seq', '?')} {record.get('tin')}/{record.get('bhfId')}"
        self.report.violations.append(f"{where} {record.get('endpoint')}: {text}")

    def feed(self, record: dict[str, Any]) -> None:
        self.report.records += 1
        if record.get("kind") == "start":
            options = record.get("options") or {}
            self.tolerate_gaps = bool(options.get("tolerate_gaps"))
            self.trd_invc_no_scope = str(options.get("trd_invc_no_scope", "tin"))
            return
        key = (str(record.get("tin")), str(record.get("bhfId")))
        endpoint = record.get("endpoint")
        body = record.get("body") or {}
        if endpoint == "selectInitOsdcInfo":
            self.devices.add(key)
            _ = self.branches[key]  # list the branch in the summary
            return
        if key not in self.devices:
            self.violation(record, "write from a device that was never initialised")
        branch = self.branches[key]
        if endpoint == "saveItem":
            branch.items.add(str(body.get("itemCd")))
            branch.counts["items"] = len(branch.items)
        elif endpoint == "saveTrnsSalesOsdc":
            self.sale(record, key, branch, body)
        elif endpoint == "insertStockIO":
            self.stock_io(record, branch, body)
        elif endpoint == "saveStockMaster":
            self.stock_master(record, branch, body)
        else:
            branch.counts["other_writes"] += 1

    def number(self, record: dict[str, Any], name: str, sent: int, last: int) -> None:
        if self.tolerate_gaps:
            if sent <= last:
                self.violation(record, f"{name} {sent} not above the previous {last}")
        elif sent != last + 1:
            kind = "repeat" if sent <= last else "gap"
            self.violation(record, f"{name} {kind}: expected {last + 1}, found {sent}")

    def sale(
        self, record: dict[str, Any], key: tuple[str, str], branch: _Branch, body: dict[str, Any]
    ) -> None:
        invc_no = int(body.get("invcNo", 0))
        self.number(record, "invcNo", invc_no, branch.last_invc)
        branch.last_invc = max(branch.last_invc, invc_no)
        branch.invc_nos.add(invc_no)
        trd = str(body.get("trdInvcNo"))
        scope = key[0] if self.trd_invc_no_scope == "tin" else f"{key[0]}/{key[1]}"
        first = self.trader_invoices.get((scope, trd))
        if first is not None and self.trd_invc_no_scope != "off":
            self.violation(record, f"trdInvcNo {trd} already accepted ({first})")
        elif first is None:
            self.trader_invoices[(scope, trd)] = f"{key[0]}/{key[1]} invcNo {invc_no}"
        if body.get("rcptTyCd") == "R":
            branch.counts["credit_notes"] += 1
            org = int(body.get("orgInvcNo") or 0)
            if org not in branch.sale_invc_nos:
                self.violation(
                    record, f"credit note {invc_no}: orgInvcNo {org} not accepted before"
                )
            return
        branch.counts["sales"] += 1
        branch.sale_invc_nos.add(invc_no)
        for item_cd, amount in line_quantities(body).items():
            branch.unreleased[item_cd] += amount

    def stock_io(self, record: dict[str, Any], branch: _Branch, body: dict[str, Any]) -> None:
        branch.counts["stock_ios"] += 1
        sar_no = int(body.get("sarNo", 0))
        self.number(record, "sarNo", sar_no, branch.last_sar)
        branch.last_sar = max(branch.last_sar, sar_no)
        sar_ty = str(body.get("sarTyCd"))
        sign = 1 if sar_ty in STOCK_IN_TYPES else -1 if sar_ty in STOCK_OUT_TYPES else 0
        if sign == 0:
            self.violation(record, f"sarNo {sar_no}: unknown sarTyCd {sar_ty}")
        for item_cd, amount in line_quantities(body).items():
            if sar_ty == SALE_OUT_TYPE:
                available = branch.unreleased[item_cd]
                if amount > available:
                    self.violation(
                        record,
                        f"stock-out 11 sarNo {sar_no} releases {amount} of {item_cd} but accepted"
                        f" sales before it leave only {available}",
                    )
                branch.unreleased[item_cd] -= amount
            branch.balance[item_cd] = branch.balance.get(item_cd, Decimal(0)) + sign * amount

    def stock_master(self, record: dict[str, Any], branch: _Branch, body: dict[str, Any]) -> None:
        branch.counts["stock_masters"] += 1
        item_cd = str(body.get("itemCd"))
        balance = branch.balance.get(item_cd)
        sent = qty(body.get("rsdQty", 0))
        branch.last_master[item_cd] = sent
        if balance is None:
            self.violation(record, f"stock master of {item_cd} before any stock IO")
        elif sent != balance:
            self.violation(record, f"rsdQty of {item_cd} is {sent}, balance is {balance}")


def verify_records(records: list[dict[str, Any]] | Any) -> VerifyReport:
    """Verify an iterable of ledger records (already parsed)."""
    verifier = _Verifier()
    for record in records:
        try:
            verifier.feed(record)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            verifier.violation(record, f"malformed record ({type(exc).__name__}: {exc})")
    for (tin, bhf_id), branch in verifier.branches.items():
        verifier.report.branches[f"{tin}/{bhf_id}"] = dict(branch.counts)
        verifier.report.balances[f"{tin}/{bhf_id}"] = dict(branch.balance)
        verifier.report.stock_masters[f"{tin}/{bhf_id}"] = dict(branch.last_master)
    return verifier.report


def verify_ledger(path: str | os.PathLike[str]) -> VerifyReport:
    """Verify the ledger file at ``path``; an unreadable file is one violation."""
    try:
        return verify_records(list(read_records(path)))
    except (LedgerError, OSError) as exc:
        report = VerifyReport()
        report.violations.append(str(exc))
        return report
