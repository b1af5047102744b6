"""The simulator's own reading of the spec: field rules and the three VAT schemes, checked
against the reference's worked examples rather than against ``schemas``."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from simulator import Simulator, SimulatorOptions
from simulator.amounts import amount_problems, line_amounts
from simulator.fields import field_problems
from simulator.options import DEFAULT_TAX_RATES
from simulator.samples import Line, item_body, sale_body

D = Decimal
RATES = dict(DEFAULT_TAX_RATES)
TIN = "P051234567A"
ITEM = "KE2NTNO0000001"


@pytest.mark.parametrize(
    ("scheme", "prc", "expected"),
    [
        # docs/oscu.md, VAT schemes: one line, shelf price 1160.00 including 16 % VAT
        (
            "inclusive",
            "1160",
            {"splyAmt": "1160", "taxblAmt": "1160", "taxAmt": "160", "totAmt": "1160"},
        ),
        (
            "split",
            "1160",
            {"splyAmt": "1160", "taxblAmt": "1000", "taxAmt": "160", "totAmt": "1160"},
        ),
        (
            "exclusive",
            "1000",
            {"splyAmt": "1000", "taxblAmt": "1000", "taxAmt": "160", "totAmt": "1160"},
        ),
        # GavaConnect's message: gross 1000 at 16 % -> "Expected: 862.07"
        (
            "split",
            "1000",
            {"splyAmt": "1000", "taxblAmt": "862.07", "taxAmt": "137.93", "totAmt": "1000"},
        ),
    ],
)
def test_the_references_worked_examples(scheme: str, prc: str, expected: dict[str, str]) -> None:
    amounts = line_amounts(D(1), D(prc), D(16), scheme, D(0))
    assert amounts == {k: D(v) for k, v in expected.items()}


def test_the_spec_stock_sample_rounds_to_the_cent() -> None:
    # the spec's stock sample (18 %, inclusive): 35000 -> taxAmt 5338.98
    assert line_amounts(D(10), D(3500), D(18), "inclusive", D(0))["taxAmt"] == D("5338.98")


def sale(**line: Any) -> dict[str, Any]:
    body = sale_body(1, [Line(ITEM, 1)])
    body["itemList"][0].update(line)
    return body


def test_a_discount_comes_off_before_the_tax_odoos_line() -> None:
    # Odoo's mocked line (reference §7.1): prc 1, dcRt 10 -> dcAmt 0.1, taxblAmt 0.9, tax 0.14
    body = sale_body(1, [Line(ITEM, 1, prc="1")], scheme="exclusive")
    body["itemList"][0].update(dcRt=10, dcAmt=0.1, taxblAmt=0.9, taxAmt=0.14, totAmt=1.04)
    body.update(taxblAmtB=0.9, taxAmtB=0.14, totTaxblAmt=0.9, totTaxAmt=0.14, totAmt=1.04)
    assert amount_problems(body, "exclusive", RATES, stock=False) == []


def test_one_cent_is_tolerated_two_are_not() -> None:
    assert amount_problems(sale(taxAmt=160.01), "split", RATES, stock=False) == []
    problems = amount_problems(sale(taxAmt=160.02), "split", RATES, stock=False)
    assert problems == ["Invalid taxAmt on item: 1. Expected: 160.00, But Found: 160.02"]


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        ({"custNm": "x" * 61}, "custNm", "at most 60"),
        ({"cfmDt": "20240230120000"}, "cfmDt", "not a real date"),
        ({"salesDt": "2024-04-15"}, "salesDt", "8 digits"),
        ({"totAmt": "1160"}, "totAmt", "JSON number"),
        ({"totAmt": True}, "totAmt", "JSON number"),
        ({"totAmt": 1160.001}, "totAmt", "at most 2 decimals"),
        ({"invcNo": 1.0}, "invcNo", "JSON integer"),
        ({"trdInvcNo": 123}, "trdInvcNo", "must be a string"),
        ({"trdInvcNo": ""}, "trdInvcNo", "required"),
        ({"rcptTyCd": "P"}, "rcptTyCd", "unknown code"),
        ({"custTin": "P05123456A"}, "custTin", "PIN"),
        ({"bhfId": "0"}, "bhfId", "2 digits"),
        ({"taxRtC": None}, "taxRtC", "required"),
        ({"stockRlsDt": ""}, None, None),  # empty optional: as if absent
        ({"rptNo": 1}, "rptNo", "unknown field"),
    ],
)
def test_field_rules(change: dict[str, Any], path: str | None, fragment: str | None) -> None:
    body = sale_body(1, [Line(ITEM, 1)])
    body.update(change)
    problems = dict(field_problems("saveTrnsSalesOsdc", body))
    if path is None:
        assert problems == {}
    else:
        assert path in problems and fragment in problems[path], problems


def test_receipt_may_carry_rpt_no_and_lines_must_run_in_order() -> None:
    body = sale_body(1, [Line(ITEM, 1), Line(ITEM, 2)])
    body["receipt"]["rptNo"] = 1
    assert field_problems("saveTrnsSalesOsdc", body) == []
    body["itemList"][1]["itemSeq"] = 3
    assert dict(field_problems("saveTrnsSalesOsdc", body)) == {
        "itemList.1.itemSeq": "must be 2 (1..n in order)"
    }


def test_body_credentials_that_match_the_headers_are_accepted(tmp_path: Path) -> None:
    # Given a device; When a sale carries tin, bhfId and cmcKey in the body too (as `etims` does)
    sim = Simulator(tmp_path / "l.jsonl", SimulatorOptions())
    init = sim.process("selectInitOsdcInfo", {}, orjson.dumps({"tin": TIN, "bhfId": "00",
                                                               "dvcSrlNo": "S"}))  # fmt: skip
    key = (init.data or {})["info"]["cmcKey"]
    headers = {"tin": TIN, "bhfid": "00", "cmckey": key}
    assert sim.process("saveItem", headers, orjson.dumps(item_body(ITEM))).result_cd == "000"
    body = {**sale_body(1, [Line(ITEM, 1)]), "tin": TIN, "bhfId": "00", "cmcKey": key}
    answer = sim.process("saveTrnsSalesOsdc", headers, orjson.dumps(body))
    # Then KRA signs it
    assert answer.result_cd == "000", answer.message
