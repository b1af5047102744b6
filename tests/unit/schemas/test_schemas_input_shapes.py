"""Odd input is refused at the field that carries it, before any arithmetic: what a till, the
CLI or an operator's ``dead edit`` is told to fix."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from producers import builders as b
from schemas.validation import EnqueueOptions, InvalidRecords, payload_errors, validate_records
from tests.workload import TIN

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def sale(key: str = "s1", **changes: Any) -> dict[str, Any]:
    line = b.SaleLine("KE2NTNO0000001", "Soap", Decimal("2"), Decimal("116"))
    return {**b.sale(TIN, "00", key, [line], trd_invc_no="T-1", at=NOW), **changes}


def errors_of(*records: dict[str, Any]) -> list[tuple[int, str]]:
    with pytest.raises(InvalidRecords) as caught:
        validate_records(list(records), EnqueueOptions())
    return [(e.index, e.path) for e in caught.value.errors]


@pytest.mark.parametrize(
    ("item_list", "path"),
    [
        ({"itemSeq": 1}, "payload.itemList"),
        ("soap", "payload.itemList"),
        (7, "payload.itemList"),
        ([1], "payload.itemList.0"),
        ([None], "payload.itemList.0"),
        ([[{"itemSeq": 1}]], "payload.itemList.0"),
    ],
)
def test_an_item_list_of_the_wrong_shape_is_refused_at_its_path(item_list: Any, path: str) -> None:
    record = sale()
    record["payload"] = {**record["payload"], "itemList": item_list}
    assert errors_of(record) == [(0, path)]


def test_a_line_field_of_the_wrong_shape_is_refused_at_its_path() -> None:
    record = sale()
    lines = [dict(line) for line in record["payload"]["itemList"]]
    lines[0]["prc"] = [116]
    lines[0]["qty"] = {"n": 2}
    record["payload"] = {**record["payload"], "itemList": lines, "receipt": "none"}
    assert sorted(errors_of(record)) == [
        (0, "payload.itemList.0.prc"),
        (0, "payload.itemList.0.qty"),
        (0, "payload.receipt"),
    ]


def test_dead_edit_validation_refuses_a_wrong_shape_with_its_path() -> None:
    payload = {**sale()["payload"], "itemList": "soap"}
    problems = payload_errors("sale", TIN, "00", payload)
    assert [(p.path, p.message) for p in problems] == [
        ("payload.itemList", "must be a list, got text")
    ]


def test_service_owned_fields_and_self_dependency_are_located() -> None:
    record = sale("s1", depends_on=["i1", "s1"])
    record["payload"] = {**record["payload"], "invcNo": 5, "sarNo": 1}
    assert errors_of(record) == [
        (0, "depends_on.1"),
        (0, "payload.invcNo"),
        (0, "payload.sarNo"),
    ]


def test_original_key_rules_are_located() -> None:
    assert errors_of(sale(original_key="s0")) == [(0, "original_key")]


@pytest.mark.parametrize("tin", [TIN + "\n", " " + TIN, TIN + " "])
def test_a_tin_with_surrounding_whitespace_is_refused_at_tin(tin: str) -> None:
    assert errors_of(sale(tin=tin)) == [(0, "tin")]


def test_a_branch_id_with_a_trailing_newline_is_refused_at_bhf_id() -> None:
    assert errors_of(sale(bhf_id="00\n")) == [(0, "bhf_id")]


@pytest.mark.parametrize(
    "key",
    [
        "   ",
        " s1",
        "s1\t",
        "s1\r\n2026-12-05 INFO forged line",
        "s1\x1b[2J",
        "s1\u2028x",
        "s1\u202ex",  # right-to-left override: shows another key than it is
    ],
)
def test_keys_must_be_printable_without_surrounding_whitespace(key: str) -> None:
    assert errors_of(sale(key)) == [(0, "idempotency_key")]
    assert errors_of(sale("s1", depends_on=["ok", key])) == [(0, "depends_on.1")]
    credit = {**sale("c1"), "kind": "credit_note", "original_key": key}
    assert (0, "original_key") in errors_of(credit)


def test_printable_keys_of_any_script_are_accepted() -> None:
    records = [sale("till-03:000123"), sale("duka/ç/ñ/€ 1", depends_on=["till-03:000123"])]
    assert [e.idempotency_key for e in validate_records(records, EnqueueOptions())] == [
        "till-03:000123",
        "duka/ç/ñ/€ 1",
    ]
