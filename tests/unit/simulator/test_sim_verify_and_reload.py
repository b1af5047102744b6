"""``verify`` judges hand-made ledgers; a reopened ledger rebuilds KRA's memory exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from etims_relay.cli import app
from simulator import Simulator, SimulatorOptions, verify_ledger, verify_records
from simulator.ledger import Ledger, read_records
from simulator.samples import Line, item_body, sale_body, stock_io_body, stock_master_body

TIN = "P051234567A"
ITEM = "KE2NTNO0000001"


def rec(endpoint: str, body: dict[str, Any], bhf: str = "00", data: Any = None) -> dict[str, Any]:
    return {"kind": "write", "endpoint": endpoint, "tin": TIN, "bhfId": bhf, "body": body,
            "data": data}  # fmt: skip


def init(bhf: str = "00") -> dict[str, Any]:
    info = {"cmcKey": "k" * 64, "sdcId": "KRACU0100000001"}
    return rec(
        "selectInitOsdcInfo", {"tin": TIN, "bhfId": bhf, "dvcSrlNo": "S"}, bhf, {"info": info}
    )


def good_ledger() -> list[dict[str, Any]]:
    return [
        {"kind": "start", "options": {"tolerate_gaps": False}},
        init(),
        rec("saveItem", item_body(ITEM)),
        rec("insertStockIO", stock_io_body(1, "06", [Line(ITEM, 10)])),
        rec("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 3)])),
        rec("saveTrnsSalesOsdc", sale_body(2, [Line(ITEM, 1)])),
        rec("insertStockIO", stock_io_body(2, "11", [Line(ITEM, 4)])),
        rec("saveStockMaster", stock_master_body(ITEM, 6)),
        rec(
            "saveTrnsSalesOsdc",
            sale_body(3, [Line(ITEM, 1)], rcpt_ty_cd="R", org_invc_no=1, trd_invc_no="CN-3"),
        ),
    ]


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def test_good_ledger_passes_with_a_summary() -> None:
    report = verify_records(good_ledger())
    assert report.violations == []
    assert report.branches[f"{TIN}/00"] == {
        "sales": 2, "credit_notes": 1, "stock_ios": 2, "stock_masters": 1, "items": 1,
        "other_writes": 0,
    }  # fmt: skip


def test_gap_repeat_and_early_stock_out_are_each_reported() -> None:
    records = [
        *good_ledger()[:4],
        rec("insertStockIO", stock_io_body(2, "11", [Line(ITEM, 1)])),  # before any sale
        rec("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 1)])),
        rec("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 1)], trd_invc_no="T-again")),  # repeat
        rec("saveTrnsSalesOsdc", sale_body(3, [Line(ITEM, 1)])),  # gap (2 missing)
    ]
    violations = verify_records(records).violations
    assert len(violations) == 3, violations
    assert "stock-out 11 sarNo 2" in violations[0]
    assert "invcNo repeat: expected 2, found 1" in violations[1]
    assert "invcNo gap: expected 2, found 3" in violations[2]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (rec("saveStockMaster", stock_master_body(ITEM, 5)), "rsdQty"),
        (rec("saveTrnsSalesOsdc", sale_body(4, [Line(ITEM, 1)], trd_invc_no="TRD-1")), "trdInvcNo"),
        (rec("saveTrnsSalesOsdc", sale_body(4, [Line(ITEM, 1)], rcpt_ty_cd="R", org_invc_no=9,
                                            trd_invc_no="CN-4")), "orgInvcNo 9"),
        (rec("saveItem", item_body("X1"), bhf="07"), "never initialised"),
    ],
)  # fmt: skip
def test_each_invariant_is_checked(extra: dict[str, Any], fragment: str) -> None:
    violations = verify_records([*good_ledger(), extra]).violations
    assert len(violations) == 1 and fragment in violations[0], violations


def test_tolerate_gaps_flag_is_respected() -> None:
    records = [{"kind": "start", "options": {"tolerate_gaps": True}}, init(),
               rec("saveItem", item_body(ITEM)),
               rec("saveTrnsSalesOsdc", sale_body(5, [Line(ITEM, 1)])),
               rec("saveTrnsSalesOsdc", sale_body(9, [Line(ITEM, 1)]))]  # fmt: skip
    assert verify_records(records).ok
    records.append(rec("saveTrnsSalesOsdc", sale_body(7, [Line(ITEM, 1)], trd_invc_no="x")))
    assert "not above the previous 9" in verify_records(records).violations[0]


def test_cli_verify_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write(tmp_path / "good.jsonl", good_ledger())
    result = runner.invoke(app, ["simulator", "verify", "--ledger", str(good)])
    assert result.exit_code == 0, result.output
    assert "ledger OK" in result.output and "sales=2 credit_notes=1" in result.output
    bad = write(
        tmp_path / "bad.jsonl",
        [*good_ledger(), rec("saveTrnsSalesOsdc", sale_body(9, [Line(ITEM, 1)]))],
    )
    result = runner.invoke(app, ["simulator", "verify", "--ledger", str(bad)])
    assert result.exit_code == 1
    assert "invcNo gap: expected 4, found 9" in result.output


def _post(sim: Simulator, endpoint: str, body: Any, headers: dict[str, str]) -> Any:
    return sim.process(endpoint, headers, orjson.dumps(body))


def test_restart_reloads_keys_numbers_items_and_stock(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    # Given a simulator that initialised a device, registered an item and signed a sale
    first = Simulator(ledger, SimulatorOptions())
    key = _post(first, "selectInitOsdcInfo", {"tin": TIN, "bhfId": "00", "dvcSrlNo": "S"}, {})
    headers = {"tin": TIN, "bhfid": "00", "cmckey": key.data["info"]["cmcKey"]}
    for endpoint, body in (("saveItem", item_body(ITEM)),
                           ("insertStockIO", stock_io_body(1, "06", [Line(ITEM, 5)])),
                           ("saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 2)]))):  # fmt: skip
        assert _post(first, endpoint, body, headers).result_cd == "000"
    first.close()
    # When it restarts on the same ledger
    second = Simulator(ledger, SimulatorOptions())
    # Then the key still works, the sequence continues and the stock rules remember the sale
    assert (
        _post(second, "saveTrnsSalesOsdc", sale_body(1, [Line(ITEM, 2)]), headers).result_cd
        == "921"
    )
    nxt = _post(second, "saveTrnsSalesOsdc", sale_body(2, [Line(ITEM, 1)]), headers)
    assert (nxt.result_cd, nxt.data["curRcptNo"], nxt.data["totRcptNo"]) == ("000", 2, 2)
    assert (
        _post(second, "insertStockIO", stock_io_body(2, "11", [Line(ITEM, 3)]), headers).result_cd
        == "000"
    )
    assert _post(second, "saveStockMaster", stock_master_body(ITEM, 2), headers).result_cd == "000"
    reinit = _post(second, "selectInitOsdcInfo", {"tin": TIN, "bhfId": "00", "dvcSrlNo": "S"}, {})
    assert reinit.result_cd == "902"
    second.close()
    assert verify_ledger(ledger).ok
    starts = [r for r in read_records(ledger) if r["kind"] == "start"]
    assert len(starts) == 2


def test_torn_last_line_is_ignored_and_cut(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    write(ledger, good_ledger())
    with ledger.open("ab") as handle:
        handle.write(b'{"kind": "write", "endp')  # a record cut short by SIGKILL
    assert len(list(read_records(ledger))) == len(good_ledger())
    Ledger(ledger, next_seq=100).append({"kind": "start", "options": {}})
    records = list(read_records(ledger))
    assert len(records) == len(good_ledger()) + 1
    assert records[-1]["seq"] == 100


def test_one_stock_master_after_several_movements_verifies_and_reports_the_balances() -> None:
    # Coalesced: the stock master of the first sale never went; the last one carries both
    records = [
        *good_ledger()[:5],
        rec("insertStockIO", stock_io_body(2, "11", [Line(ITEM, 3)])),
        rec("saveTrnsSalesOsdc", sale_body(2, [Line(ITEM, 1)])),
        rec("insertStockIO", stock_io_body(3, "11", [Line(ITEM, 1)])),
        rec("saveStockMaster", stock_master_body(ITEM, 6)),
    ]
    report = verify_records(records)
    assert report.ok, report.violations
    assert report.balances[f"{TIN}/00"] == {ITEM: 6}
    assert report.stock_masters[f"{TIN}/00"] == {ITEM: 6}


def test_a_stock_master_before_a_movement_it_reflects_is_reported() -> None:
    records = [
        *good_ledger()[:5],
        rec("saveStockMaster", stock_master_body(ITEM, 7)),  # the balance after the stock-out
        rec("insertStockIO", stock_io_body(2, "11", [Line(ITEM, 3)])),
    ]
    violations = verify_records(records).violations
    assert len(violations) == 1 and "rsdQty of" in violations[0], violations


def merged_stock_out_ledger(*, sales_first: int) -> list[dict[str, Any]]:
    """Three sales (3, 1 and 2 of the item) and ONE stock-out of 6 releasing them all, sent
    after the first ``sales_first`` of them."""
    sales = [
        rec("saveTrnsSalesOsdc", sale_body(n, [Line(ITEM, qty)]))
        for n, qty in ((1, 3), (2, 1), (3, 2))
    ]
    merged = rec("insertStockIO", stock_io_body(2, "11", [Line(ITEM, 6)]))
    return [
        *good_ledger()[:4],
        *sales[:sales_first],
        merged,
        *sales[sales_first:],
        rec("saveStockMaster", stock_master_body(ITEM, 4)),
    ]


def test_a_merged_stock_out_after_every_sale_it_releases_verifies() -> None:
    report = verify_records(merged_stock_out_ledger(sales_first=3))
    assert report.ok, report.violations
    assert report.balances[f"{TIN}/00"] == {ITEM: 4}


def test_a_merged_stock_out_before_one_of_its_sales_is_reported() -> None:
    violations = verify_records(merged_stock_out_ledger(sales_first=2)).violations
    assert len(violations) == 1, violations
    assert "stock-out 11 sarNo 2 releases 6" in violations[0]
