"""Reading class 04 of KRA's code list: all five rates or none (half a table never replaces
a whole one), and the override comparison ``status`` and the metric report."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from simulator.catalog import code_classes
from simulator.options import parse_tax_rates
from worker.codes import CodeListError, rates_from_code_list
from worker.tax_rates import override_mismatches, rates_to_json


def code_list(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"clsList": [{"cdCls": "05", "dtlList": [{"cd": "KE"}]},
                        {"cdCls": "04", "dtlList": rows}]}  # fmt: skip


def test_the_simulators_list_reads_back_as_its_rates() -> None:
    rates = parse_tax_rates(["E=0", "B=16"])
    assert rates_from_code_list({"clsList": code_classes(rates)}) == rates


def test_rates_written_with_a_percent_sign_or_as_numbers_are_read() -> None:
    given = ["0", 16, "0.00", 0, "8%"]
    rows = [{"cd": c, "userDfnCd1": r} for c, r in zip("ABCDE", given, strict=True)]
    assert rates_from_code_list(code_list(rows)) == {
        "A": 0, "B": 16, "C": 0, "D": 0, "E": Decimal("8"),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"cd": c, "userDfnCd1": "0"} for c in "ABCD"], "lacks a rate for tax type(s) E"),
        ([{"cd": c, "userDfnCd1": "x" if c == "B" else "0"} for c in "ABCDE"], "B is not a number"),
        ([{"cd": c, "userDfnCd1": "160" if c == "B" else "0"} for c in "ABCDE"], "out of range"),
    ],
)
def test_an_incomplete_or_unreadable_class_04_is_refused(
    rows: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(CodeListError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rates_from_code_list(code_list(rows))


def test_a_list_without_class_04_is_refused() -> None:
    with pytest.raises(CodeListError, match="no class 04"):
        rates_from_code_list({"clsList": [{"cdCls": "05", "dtlList": []}]})


def test_only_branches_whose_kra_rates_differ_from_the_override_are_reported() -> None:
    kra = {("P1", "00"): rates_to_json(parse_tax_rates(["E=0"])),
           ("P1", "01"): rates_to_json(parse_tax_rates([]))}  # fmt: skip
    override = {**parse_tax_rates([]), "B": Decimal("16.00")}  # 16.00 is 16
    (mismatch,) = override_mismatches(kra, override)
    assert (mismatch.bhf_id, mismatch.differences) == ("00", {"E": (Decimal(0), Decimal(8))})
    assert override_mismatches(kra, None) == []
