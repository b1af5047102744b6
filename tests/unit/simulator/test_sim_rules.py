"""The simulator refuses malformed and out-of-order bodies the way KRA does, and records
nothing when it refuses.

Each case starts from one branch that has: a device, item ``ITEM`` (and ``ITEM2``, never
sold), a stock-in of 10 ``ITEM`` (sarNo 1) and an accepted sale of 2 ``ITEM`` (invcNo 1).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from simulator import Simulator, SimulatorOptions
from simulator.answers import Answer
from simulator.samples import (
    Line,
    item_body,
    sale_body,
    stock_io_body,
    stock_master_body,
)

TIN = "P051234567A"
ITEM = "KE2NTNO0000001"
ITEM2 = "KE2NTNO0000002"


@dataclass
class Branch:
    sim: Simulator
    headers: dict[str, str]

    def post(self, endpoint: str, body: Any, headers: dict[str, str] | None = None) -> Answer:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return self.sim.process(endpoint, self.headers if headers is None else headers, raw)


def make_branch(tmp_path: Path, **options: Any) -> Branch:
    scheme = options.get("vat_scheme", "split")
    sim = Simulator(tmp_path / "ledger.jsonl", SimulatorOptions(**options))
    init = sim.process(
        "selectInitOsdcInfo", {}, orjson.dumps({"tin": TIN, "bhfId": "00", "dvcSrlNo": "SN-1"})
    )
    assert init.result_cd == "000", init
    key = init.data["info"]["cmcKey"]  # type: ignore[index]
    branch = Branch(sim, {"tin": TIN, "bhfid": "00", "cmckey": key})
    for body, endpoint in (
        (item_body(ITEM), "saveItem"),
        (item_body(ITEM2), "saveItem"),
        (stock_io_body(1, "06", [Line(ITEM, 10)], scheme=scheme), "insertStockIO"),
        (sale_body(1, [Line(ITEM, 2)], scheme=scheme), "saveTrnsSalesOsdc"),
    ):
        answer = branch.post(endpoint, body)
        assert answer.result_cd == "000", (endpoint, answer)
    return branch


@pytest.fixture
def branch(tmp_path: Path) -> Branch:
    return make_branch(tmp_path)


def sale2(**changes: Any) -> dict[str, Any]:
    body = sale_body(2, [Line(ITEM, 1)])
    body.update(changes)
    return body


def line_changed(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body["itemList"][0].update(changes)
    return body


def without(body: dict[str, Any], *fields: str) -> dict[str, Any]:
    for name in fields:
        body.pop(name)
    return body


def credit_note(**changes: Any) -> dict[str, Any]:
    body = sale_body(2, [Line(ITEM, 1)], rcpt_ty_cd="R", org_invc_no=1, trd_invc_no="CN-2")
    body.update(changes)
    return body


Case = tuple[str, str, Callable[[], Any], str, str]

CASES: list[Case] = [
    # (id, endpoint, body factory, resultCd, fragment the message must contain)
    (
        "sale missing trdInvcNo",
        "saveTrnsSalesOsdc",
        lambda: without(sale2(), "trdInvcNo"),
        "910",
        "trdInvcNo",
    ),
    (
        "sale missing receipt",
        "saveTrnsSalesOsdc",
        lambda: without(sale2(), "receipt"),
        "910",
        "receipt",
    ),
    ("overlong custNm", "saveTrnsSalesOsdc", lambda: sale2(custNm="x" * 61), "910", "custNm"),
    (
        "overlong receipt trdeNm",
        "saveTrnsSalesOsdc",
        lambda: sale2(receipt={**sale2()["receipt"], "trdeNm": "y" * 21}),
        "910",
        "receipt.trdeNm",
    ),
    (
        "bad cfmDt format",
        "saveTrnsSalesOsdc",
        lambda: sale2(cfmDt="2024-04-15 10:00"),
        "910",
        "cfmDt",
    ),
    (
        "impossible salesDt",
        "saveTrnsSalesOsdc",
        lambda: sale2(salesDt="20241345"),
        "910",
        "salesDt",
    ),
    ("bad pmtTyCd code", "saveTrnsSalesOsdc", lambda: sale2(pmtTyCd="99"), "910", "pmtTyCd"),
    (
        "bad line taxTyCd",
        "saveTrnsSalesOsdc",
        lambda: line_changed(sale2(), taxTyCd="Z"),
        "910",
        "itemList.0.taxTyCd",
    ),
    (
        "zero qty",
        "saveTrnsSalesOsdc",
        lambda: line_changed(sale2(), qty=0),
        "910",
        "itemList.0.qty",
    ),
    (
        "itemSeq not 1..n",
        "saveTrnsSalesOsdc",
        lambda: line_changed(sale2(), itemSeq=2),
        "910",
        "itemList.0.itemSeq",
    ),
    (
        "empty itemList",
        "saveTrnsSalesOsdc",
        lambda: sale2(itemList=[], totItemCnt=1),
        "910",
        "itemList",
    ),
    ("totItemCnt mismatch", "saveTrnsSalesOsdc", lambda: sale2(totItemCnt=2), "910", "totItemCnt"),
    ("unknown field", "saveTrnsSalesOsdc", lambda: sale2(bogusField=1), "910", "bogusField"),
    ("wrong taxRtB", "saveTrnsSalesOsdc", lambda: sale2(taxRtB=18), "910", "taxRtB"),
    (
        "off line taxblAmt",
        "saveTrnsSalesOsdc",
        lambda: line_changed(sale2(), taxblAmt=1160),
        "910",
        "Invalid taxblAmt on item: 1. Expected: 1000.00, But Found: 1160.00",
    ),
    ("off header totAmt", "saveTrnsSalesOsdc", lambda: sale2(totAmt=999), "910", "totAmt"),
    (
        "unregistered item",
        "saveTrnsSalesOsdc",
        lambda: line_changed(sale2(), itemCd="KE2NTNO0000099"),
        "910",
        "itemList.0.itemCd",
    ),
    (
        "repeated invcNo",
        "saveTrnsSalesOsdc",
        lambda: sale_body(1, [Line(ITEM, 2)]),
        "921",
        "invcNo 1",
    ),
    (
        "invcNo gap",
        "saveTrnsSalesOsdc",
        lambda: sale2(invcNo=3),
        "910",
        "invcNo sequence, expected: 2 but found: 3",
    ),
    (
        "reused trdInvcNo",
        "saveTrnsSalesOsdc",
        lambda: sale2(trdInvcNo="TRD-1"),
        "994",
        "trdInvcNo TRD-1",
    ),
    ("sale with orgInvcNo", "saveTrnsSalesOsdc", lambda: sale2(orgInvcNo=1), "910", "orgInvcNo"),
    (
        "credit note of unknown sale",
        "saveTrnsSalesOsdc",
        lambda: credit_note(orgInvcNo=7),
        "910",
        "orgInvcNo",
    ),
    (
        "credit note without rfdRsnCd",
        "saveTrnsSalesOsdc",
        lambda: credit_note(rfdRsnCd=None),
        "910",
        "rfdRsnCd",
    ),
    (
        "credit note without rfdDt",
        "saveTrnsSalesOsdc",
        lambda: credit_note(rfdDt=None),
        "910",
        "rfdDt",
    ),
    (
        "orgSarNo null",
        "insertStockIO",
        lambda: {**stock_io_body(2, "06", [Line(ITEM, 1)]), "orgSarNo": None},
        "910",
        "orgSarNo",
    ),
    (
        "sarNo gap",
        "insertStockIO",
        lambda: stock_io_body(3, "06", [Line(ITEM, 1)]),
        "910",
        "sarNo sequence, expected: 2 but found: 3",
    ),
    (
        "repeated sarNo",
        "insertStockIO",
        lambda: stock_io_body(1, "06", [Line(ITEM, 1)]),
        "921",
        "sarNo 1",
    ),
    (
        "bad sarTyCd",
        "insertStockIO",
        lambda: stock_io_body(2, "99", [Line(ITEM, 1)]),
        "910",
        "sarTyCd",
    ),
    (
        "ocrnDt as D14",
        "insertStockIO",
        lambda: {**stock_io_body(2, "06", [Line(ITEM, 1)]), "ocrnDt": "20240415101010"},
        "910",
        "ocrnDt",
    ),
    (
        "stock-out 11 before its sale",
        "insertStockIO",
        lambda: stock_io_body(2, "11", [Line(ITEM2, 1)]),
        "922",
        "itemList.0.itemCd",
    ),
    (
        "stock-out 11 more than sold",
        "insertStockIO",
        lambda: stock_io_body(2, "11", [Line(ITEM, 3)]),
        "922",
        ITEM,
    ),
    (
        "stock line off taxAmt",
        "insertStockIO",
        lambda: line_changed(stock_io_body(2, "06", [Line(ITEM, 1)]), taxAmt=1),
        "910",
        "taxAmt on item: 1",
    ),
    (
        "rsdQty mismatch",
        "saveStockMaster",
        lambda: stock_master_body(ITEM, 8),
        "910",
        "rsdQty mismatch. Expected: 10 but found: 8",
    ),
    (
        "stock master before any IO",
        "saveStockMaster",
        lambda: stock_master_body(ITEM2, 0),
        "910",
        "Stock IO is empty",
    ),
    ("overlong itemCd", "saveItem", lambda: item_body("K" * 21), "910", "itemCd"),
    ("bad itemTyCd", "saveItem", lambda: {**item_body(ITEM), "itemTyCd": "9"}, "910", "itemTyCd"),
    (
        "missing orgnNatCd",
        "saveItem",
        lambda: without(item_body(ITEM), "orgnNatCd"),
        "910",
        "orgnNatCd",
    ),
    ("bad lastReqDt", "selectCodeList", lambda: {"lastReqDt": "yesterday"}, "910", "lastReqDt"),
    (
        "body tin differs from header",
        "saveItem",
        lambda: {**item_body(ITEM), "tin": "P000000001Z"},
        "910",
        "tin",
    ),
    ("malformed JSON", "saveTrnsSalesOsdc", lambda: b'{"invcNo": 2,', "911", "malformed JSON"),
    ("empty body", "saveTrnsSalesOsdc", lambda: b"", "911", "body"),
    ("body is a list", "saveItem", lambda: b"[1, 2]", "911", "JSON object"),
    ("body is a string", "saveTrnsSalesOsdc", lambda: b'"sale"', "911", "JSON object"),
    ("init body not JSON", "selectInitOsdcInfo", lambda: b"tin=P051234567A", "911", "JSON"),
    (
        "body bhfId differs from header",
        "saveTrnsSalesOsdc",
        lambda: sale2(bhfId="01"),
        "910",
        "bhfId",
    ),
    (
        "body cmcKey differs from header",
        "saveTrnsSalesOsdc",
        lambda: sale2(tin=TIN, bhfId="00", cmcKey="0" * 64),
        "910",
        "cmcKey",
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "factory", "code", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_refusal_names_the_field_and_records_nothing(
    branch: Branch, endpoint: str, factory: Callable[[], Any], code: str, fragment: str
) -> None:
    # Given a branch with one accepted sale; When a bad body arrives
    before = branch.sim.ledger.next_seq
    answer = branch.post(endpoint, factory())
    # Then KRA's code and a message naming the field, and nothing in the ledger
    assert (answer.result_cd, fragment in answer.message) == (code, True), answer.message
    assert answer.data is None
    assert branch.sim.ledger.next_seq == before


@pytest.mark.parametrize(
    ("headers", "code", "fragment"),
    [
        pytest.param({}, "900", "tin, bhfId, cmcKey", id="no headers"),
        pytest.param({"tin": TIN, "bhfid": "00"}, "900", "cmcKey", id="no cmcKey"),
        pytest.param(
            {"tin": TIN, "bhfid": "00", "cmckey": "0" * 64}, "901", "valid device", id="wrong key"
        ),
        pytest.param(
            {"tin": TIN, "bhfid": "01", "cmckey": "0" * 64},
            "901",
            "valid device",
            id="unknown branch",
        ),
    ],
)
def test_auth_headers(branch: Branch, headers: dict[str, str], code: str, fragment: str) -> None:
    answer = branch.post("saveTrnsSalesOsdc", sale2(), headers=headers)
    assert answer.result_cd == code
    assert fragment in answer.message
    assert branch.sim.state.branches[(TIN, "00")].last_invc_no == 1


def test_reinit_is_902_with_no_key(branch: Branch) -> None:
    body = orjson.dumps({"tin": TIN, "bhfId": "00", "dvcSrlNo": "SN-1"})
    answer = branch.sim.process("selectInitOsdcInfo", {}, body)
    assert (answer.result_cd, answer.data) == ("902", None)


def test_unapproved_serial_is_905(tmp_path: Path) -> None:
    sim = Simulator(tmp_path / "l.jsonl", SimulatorOptions(approved_serials=frozenset({"OK-1"})))
    refused = sim.process(
        "selectInitOsdcInfo", {}, orjson.dumps({"tin": TIN, "bhfId": "00", "dvcSrlNo": "NOPE"})
    )
    accepted = sim.process(
        "selectInitOsdcInfo", {}, orjson.dumps({"tin": TIN, "bhfId": "00", "dvcSrlNo": "OK-1"})
    )
    assert refused.result_cd == "905"
    assert accepted.result_cd == "000"


def test_init_with_missing_serial_is_910(tmp_path: Path) -> None:
    sim = Simulator(tmp_path / "l.jsonl", SimulatorOptions())
    answer = sim.process("selectInitOsdcInfo", {}, orjson.dumps({"tin": TIN, "bhfId": "00"}))
    assert answer.result_cd == "910"
    assert "dvcSrlNo" in answer.message


def test_accepted_sale_carries_a_signature(branch: Branch) -> None:
    answer = branch.post("saveTrnsSalesOsdc", sale2())
    assert answer.result_cd == "000"
    data = answer.data or {}
    assert (data["curRcptNo"], data["totRcptNo"]) == (2, 2)
    assert re.fullmatch(r"[A-Z0-9]{16}", data["rcptSign"])
    assert re.fullmatch(r"[A-Z0-9]{26}", data["intrlData"])
    assert len(data["sdcDateTime"]) == 14 and data["sdcDateTime"].isdigit()


def test_credit_note_counts_its_own_receipt_type(branch: Branch) -> None:
    answer = branch.post("saveTrnsSalesOsdc", credit_note())
    assert answer.result_cd == "000", answer.message
    assert (answer.data or {})["curRcptNo"] == 1
    assert (answer.data or {})["totRcptNo"] == 2


def test_stock_flow_sale_then_stock_out_then_master(branch: Branch) -> None:
    # Given 10 in and 2 sold; When the sale's goods leave and the master is reported
    assert branch.post("insertStockIO", stock_io_body(2, "11", [Line(ITEM, 2)])).result_cd == "000"
    # Then the released quantity cannot be released twice, and the balance is 8
    again = branch.post("insertStockIO", stock_io_body(3, "11", [Line(ITEM, 1)]))
    assert again.result_cd == "922"
    assert branch.post("saveStockMaster", stock_master_body(ITEM, 8)).result_cd == "000"


def test_gaps_tolerated_when_configured(tmp_path: Path) -> None:
    branch = make_branch(tmp_path, tolerate_gaps=True)
    assert branch.post("saveTrnsSalesOsdc", sale2(invcNo=5)).result_cd == "000"
    back = branch.post("saveTrnsSalesOsdc", sale2(invcNo=4, trdInvcNo="TRD-4"))
    assert back.result_cd == "910"
    assert "invcNo" in back.message
    assert branch.post("saveTrnsSalesOsdc", sale2(invcNo=5)).result_cd == "921"


@pytest.mark.parametrize("scheme", ["inclusive", "split", "exclusive"])
def test_each_vat_scheme_accepts_its_own_amounts_only(tmp_path: Path, scheme: str) -> None:
    branch = make_branch(tmp_path, vat_scheme=scheme)
    other = "inclusive" if scheme == "split" else "split"
    refused = branch.post("saveTrnsSalesOsdc", sale_body(2, [Line(ITEM, 1)], scheme=other))
    assert refused.result_cd == "910"
    accepted = branch.post("saveTrnsSalesOsdc", sale_body(2, [Line(ITEM, 1)], scheme=scheme))
    assert accepted.result_cd == "000", accepted.message
