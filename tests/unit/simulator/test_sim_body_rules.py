"""The simulator's host body rules, each both ways: what GavaConnect refuses and etims-api
accepted (itemCd structure, pkg), what both refuse (services in stock, a credit note with
another buyer PIN), and the switchable "goods must be in the stock master before a sale"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from simulator import Simulator, SimulatorOptions
from simulator.answers import Answer
from simulator.samples import Line, item_body, sale_body, stock_io_body, stock_master_body

TIN = "P051234567A"
GOOD = "KE2NTNO0000001"
SERVICE = "KE3NTNO0000002"


class Device:
    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.sim = Simulator(tmp_path / "ledger.jsonl", SimulatorOptions(**options))
        init = self.sim.process(
            "selectInitOsdcInfo", {}, orjson.dumps({"tin": TIN, "bhfId": "00", "dvcSrlNo": "S1"})
        )
        assert init.result_cd == "000", init
        key = init.data["info"]["cmcKey"]  # type: ignore[index]
        self.headers = {"tin": TIN, "bhfid": "00", "cmckey": key}

    def post(self, endpoint: str, body: dict[str, Any]) -> Answer:
        return self.sim.process(endpoint, self.headers, orjson.dumps(body))

    def ok(self, endpoint: str, body: dict[str, Any]) -> None:
        answer = self.post(endpoint, body)
        assert answer.result_cd == "000", (endpoint, answer)


def service_item(code: str = SERVICE) -> dict[str, Any]:
    return {**item_body(code), "itemTyCd": "3"}


def with_pkg(body: dict[str, Any], pkg: int) -> dict[str, Any]:
    body["itemList"][0]["pkg"] = pkg
    return body


# --------------------------------------------------------------------------- itemCd


def test_gavaconnect_refuses_item_codes_off_the_structure(tmp_path: Path) -> None:
    device = Device(tmp_path, flavour="gavaconnect")
    answer = device.post("saveItem", item_body("ODOO-000000000000042"))
    assert answer.result_cd == "910"
    assert "itemCd: ODOO-000000000000042 is not country(2)" in answer.message


def test_etims_api_accepts_arbitrary_item_codes(tmp_path: Path) -> None:
    Device(tmp_path).ok("saveItem", item_body("ODOO-000000000000042"))


def test_gavaconnect_wants_the_prefix_to_agree_and_the_next_running_number(
    tmp_path: Path,
) -> None:
    device = Device(tmp_path, flavour="gavaconnect")
    one_char = {**item_body("KE2NTNO0000001"), "qtyUnitCd": "U"}
    assert device.post("saveItem", one_char).message == "Incorrect QtyUnitCd Prefix"
    device.ok("saveItem", item_body("KE2NTNO0000001"))
    device.ok("saveItem", item_body("KE2NTNO0000001"))  # an update of a known code
    skipped = device.post("saveItem", item_body("KE2NTNO0000003"))
    assert skipped.message == "Invalid itemCd Sequence. Expected sequence ending with: 0000002"
    device.ok("saveItem", item_body("KE2NTNO0000002"))


def test_the_structure_rule_can_be_switched_off_on_gavaconnect(tmp_path: Path) -> None:
    device = Device(tmp_path, flavour="gavaconnect", item_code_structure=False)
    device.ok("saveItem", item_body("KE2NTNO0000009"))


# --------------------------------------------------------------------------- pkg


@pytest.mark.parametrize(
    ("flavour", "refused_pkg", "accepted_pkg", "expected"),
    [("gavaconnect", 2, 1, "Expected: 1, Found: 2"), ("etims-api", 1, 2, "Expected: 2, Found: 1")],
)
def test_pkg_of_an_unpackaged_sale_line_follows_the_host(
    tmp_path: Path, flavour: str, refused_pkg: int, accepted_pkg: int, expected: str
) -> None:
    device = Device(tmp_path, flavour=flavour, item_code_structure=False)
    device.ok("saveItem", item_body(GOOD))
    refused = device.post("saveTrnsSalesOsdc", with_pkg(sale_body(1, [Line(GOOD, 2)]), refused_pkg))
    assert (refused.result_cd, refused.message) == ("910", f"itemList.0.pkg: {expected}")
    device.ok("saveTrnsSalesOsdc", with_pkg(sale_body(1, [Line(GOOD, 2)]), accepted_pkg))


# --------------------------------------------------------------------------- services


def test_a_service_is_refused_in_stock_movements_and_masters(tmp_path: Path) -> None:
    device = Device(tmp_path)
    device.ok("saveItem", service_item())
    answer = device.post("insertStockIO", stock_io_body(1, "06", [Line(SERVICE, 5)]))
    assert answer.result_cd == "910"
    assert answer.message == (
        f"itemList.0.itemCd: item {SERVICE} is a service (itemTyCd 3) and has no stock"
    )
    master = device.post("saveStockMaster", stock_master_body(SERVICE, 0))
    assert master.message.startswith(f"itemCd: item {SERVICE} is a service")


def test_services_in_stock_are_accepted_when_the_rule_is_off(tmp_path: Path) -> None:
    device = Device(tmp_path, no_service_stock=False)
    device.ok("saveItem", service_item())
    device.ok("insertStockIO", stock_io_body(1, "06", [Line(SERVICE, 5)]))


# --------------------------------------------------------------------------- credit notes


def credit_note(cust_tin: str | None) -> dict[str, Any]:
    return sale_body(2, [Line(GOOD, 1)], rcpt_ty_cd="R", org_invc_no=1, cust_tin=cust_tin)


def test_a_credit_note_with_another_buyer_pin_is_refused(tmp_path: Path) -> None:
    device = Device(tmp_path)
    device.ok("saveItem", item_body(GOOD))
    device.ok("saveTrnsSalesOsdc", sale_body(1, [Line(GOOD, 2)], cust_tin="A123456789Z"))
    answer = device.post("saveTrnsSalesOsdc", credit_note("A000000001B"))
    assert (answer.result_cd, answer.message) == (
        "910",
        "KRA only accepts credit notes with matching PINs",
    )
    assert device.post("saveTrnsSalesOsdc", credit_note(None)).result_cd == "910"
    device.ok("saveTrnsSalesOsdc", credit_note("A123456789Z"))


def test_credit_note_pins_are_not_compared_when_the_rule_is_off(tmp_path: Path) -> None:
    device = Device(tmp_path, credit_note_buyer=False)
    device.ok("saveItem", item_body(GOOD))
    device.ok("saveTrnsSalesOsdc", sale_body(1, [Line(GOOD, 2)], cust_tin="A123456789Z"))
    device.ok("saveTrnsSalesOsdc", credit_note("A000000001B"))


# --------------------------------------------------------------------------- stock before sale


def test_goods_must_be_in_the_stock_master_before_a_sale_when_asked(tmp_path: Path) -> None:
    device = Device(tmp_path, stock_before_sale=True)
    device.ok("saveItem", item_body(GOOD))
    device.ok("saveItem", service_item())
    refused = device.post("saveTrnsSalesOsdc", sale_body(1, [Line(GOOD, 1)]))
    assert (refused.result_cd, refused.message) == (
        "910",
        f"Item {GOOD} does not exist in your stock master",
    )
    device.ok("saveTrnsSalesOsdc", sale_body(1, [Line(SERVICE, 1)]))  # services hold no stock
    device.ok("insertStockIO", stock_io_body(1, "06", [Line(GOOD, 5)]))
    device.ok("saveStockMaster", stock_master_body(GOOD, 5))
    device.ok("saveTrnsSalesOsdc", sale_body(2, [Line(GOOD, 1)]))


def test_goods_sell_without_stock_by_default(tmp_path: Path) -> None:
    device = Device(tmp_path)
    device.ok("saveItem", item_body(GOOD))
    device.ok("saveTrnsSalesOsdc", sale_body(1, [Line(GOOD, 1)]))


def test_the_rules_in_force_are_written_to_the_ledger(tmp_path: Path) -> None:
    Device(tmp_path, flavour="gavaconnect", stock_before_sale=True)
    start = orjson.loads((tmp_path / "ledger.jsonl").read_text().splitlines()[0])
    rules = {k: start["options"][k] for k in RULE_KEYS}
    assert rules == {
        "flavour": "gavaconnect",
        "item_code_structure": True,
        "pkg_rule": "one_for_unpackaged",
        "no_service_stock": True,
        "credit_note_buyer": True,
        "stock_before_sale": True,
    }


RULE_KEYS = (
    "flavour",
    "item_code_structure",
    "pkg_rule",
    "no_service_stock",
    "credit_note_buyer",
    "stock_before_sale",
)


def test_changing_the_flavour_brings_its_rule_defaults() -> None:
    gava = SimulatorOptions().with_changes(flavour="gavaconnect")
    assert (gava.item_code_structure, gava.pkg_rule) == (True, "one_for_unpackaged")
    kept = SimulatorOptions().with_changes(flavour="gavaconnect", pkg_rule="qty")
    assert (kept.item_code_structure, kept.pkg_rule) == (True, "qty")
    with pytest.raises(ValueError, match="flavour must be one of"):
        SimulatorOptions(flavour="kra")
