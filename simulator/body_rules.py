"""Body rules one KRA host enforces and the other did not (docs/oscu.md, "Body rules that
differ by host"), each switchable in :class:`~simulator.options.SimulatorOptions`.

A second reading of the same notes as ``schemas.body_rules``, written apart on purpose: if the
relay's reading drifts, the simulator still answers as the host would. Wording follows the
live answers where the notes quote them ("Incorrect QtyUnitCd Prefix", "Invalid itemCd
Sequence", "Expected: 1, Found: 2", "does not exist in your stock master").

Each function returns a message (the 910 answer) or ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from simulator.options import SimulatorOptions
from simulator.state import Branch, SimulatorState

_CODE = re.compile(
    r"^(?P<OrgnNatCd>[A-Z]{2})(?P<ItemTyCd>[123])(?P<PkgUnitCd>[A-Z0-9]{2})"
    r"(?P<QtyUnitCd>[A-Z0-9]{2})(?P<sequence>\d{7})$"
)
_SERVICE = "3"
_NO_PACKAGING = "NT"


def _number(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def item_code_problem(
    options: SimulatorOptions, state: SimulatorState, tin: str, body: dict[str, Any]
) -> str | None:
    """saveItem on a host that checks the code: structure, prefix agreement, and a running
    number that is the next unused one for the PIN (re-saving a known code is an update)."""
    if not options.item_code_structure:
        return None
    code = str(body.get("itemCd", ""))
    match = _CODE.match(code)
    if match is None:
        return f"itemCd: {code} is not country(2)+itemTyCd(1)+pkgUnitCd(2)+qtyUnitCd(2)+sequence(7)"
    for field in ("OrgnNatCd", "ItemTyCd", "PkgUnitCd", "QtyUnitCd"):
        sent = body.get(field[0].lower() + field[1:])
        if sent is not None and str(sent) != match[field]:
            return f"Incorrect {field} Prefix"
    codes = list(_tin_item_codes(state, tin))
    if code in codes:
        return None
    used = [int(m["sequence"]) for m in map(_CODE.match, codes) if m is not None]
    expected = max(used, default=0) + 1
    if int(match["sequence"]) != expected:
        return f"Invalid itemCd Sequence. Expected sequence ending with: {expected:07d}"
    return None


def _tin_item_codes(state: SimulatorState, tin: str) -> Iterable[str]:
    for (branch_tin, _), branch in state.branches.items():
        if branch_tin == tin:
            yield from branch.items


def pkg_problem(options: SimulatorOptions, body: dict[str, Any]) -> str | None:
    """pkg of unpackaged sale lines: equal to qty, or 1 (GavaConnect)."""
    for index, line in enumerate(body.get("itemList") or ()):
        if not isinstance(line, dict) or line.get("pkgUnitCd") != _NO_PACKAGING:
            continue
        qty, pkg = _number(line.get("qty")), _number(line.get("pkg"))
        if qty is None or pkg is None:
            continue
        expected = Decimal(1) if options.pkg_rule == "one_for_unpackaged" else qty
        if pkg != expected:
            return (
                f"itemList.{index}.pkg: Expected: {format(expected.normalize(), 'f')},"
                f" Found: {format(pkg.normalize(), 'f')}"
            )
    return None


def service_stock_problem(
    options: SimulatorOptions, branch: Branch, codes: Iterable[tuple[str, str]]
) -> str | None:
    """A registered service item (itemTyCd 3) in a stock movement or stock master."""
    if not options.no_service_stock:
        return None
    for where, code in codes:
        item = branch.items.get(code)
        if item is not None and str(item.get("itemTyCd")) == _SERVICE:
            return f"{where}: item {code} is a service (itemTyCd 3) and has no stock"
    return None


def stock_before_sale_problem(
    options: SimulatorOptions, branch: Branch, body: dict[str, Any]
) -> str | None:
    """Goods sold at a branch must hold stock there first (live GavaConnect)."""
    if not options.stock_before_sale or body.get("rcptTyCd") != "S":
        return None
    for line in body.get("itemList") or ():
        code = str(line.get("itemCd", "")) if isinstance(line, dict) else ""
        item = branch.items.get(code)
        if item is None or str(item.get("itemTyCd")) == _SERVICE:
            continue
        if code not in branch.balance:
            return f"Item {code} does not exist in your stock master"
    return None


def buyer_pin_problem(options: SimulatorOptions, body: dict[str, Any], original: Any) -> str | None:
    """A credit note's buyer PIN must be the original sale's."""
    if not options.credit_note_buyer:
        return None
    if _pin(body) != _pin(original):
        return "KRA only accepts credit notes with matching PINs"
    return None


def _pin(body: dict[str, Any]) -> str | None:
    pin = body.get("custTin")
    receipt = body.get("receipt")
    if pin is None and isinstance(receipt, dict):
        pin = receipt.get("custTin")
    return None if pin is None else str(pin)
