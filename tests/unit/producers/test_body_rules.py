"""Host body rules at enqueue, without a database: settings by flavour, the errors a producer
sees (record index, field path, message) with each rule on and off, and the builders, CSV
import and till filling ``pkg`` and refusing what the relay would refuse."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from producers import builders as b
from producers.csv_import import parse_csv
from producers.till import Till
from schemas.body_rules import BodyRules
from schemas.settings import Settings
from schemas.validation import EnqueueOptions, InvalidRecords, RecordError, validate_records

TIN = "P051234567A"
AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
GAVA = BodyRules.for_flavour("gavaconnect")
#: A line whose packaging unit (BX) disagrees with its code's prefix (NT).
BOXED = b.SaleLine("KE2NTNO0000003", "Soap", Decimal(2), Decimal(116), pkg_unit_cd="BX")
ETIMS = BodyRules.for_flavour("etims-api")


def errors_of(records: list[dict[str, Any]], rules: BodyRules) -> list[RecordError]:
    try:
        validate_records(records, EnqueueOptions(rules=rules))
    except InvalidRecords as exc:
        return exc.errors
    return []


def item(code: str, **changes: Any) -> dict[str, Any]:
    record = b.item(TIN, "00", f"item:{code}", item_cd=code, item_nm="Soap", price=Decimal(116))
    record["payload"].update(changes)
    return record


def sale(code: str, qty: int = 2, pkg: int | None = None, rule: str = "qty") -> dict[str, Any]:
    line = b.SaleLine(
        code, "Soap", Decimal(qty), Decimal(116), pkg=None if pkg is None else Decimal(pkg)
    )
    return b.sale(TIN, "00", f"sale:{code}", [line], trd_invc_no="T1", at=AT, pkg_rule=rule)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- settings


def test_rules_follow_the_flavour_and_each_can_be_overridden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in [k for k in os.environ if k.startswith("ETIMS_")]:
        monkeypatch.delenv(key)
    assert Settings(_env_file=None).body_rules() == ETIMS  # type: ignore[call-arg]
    assert ETIMS == BodyRules(False, "qty", True, True)
    monkeypatch.setenv("ETIMS_OSCU__FLAVOUR", "gavaconnect")
    assert Settings(_env_file=None).body_rules() == GAVA  # type: ignore[call-arg]
    assert GAVA == BodyRules(True, "one_for_unpackaged", True, True)
    monkeypatch.setenv("ETIMS_RULES__ITEM_CODE_STRUCTURE", "false")
    monkeypatch.setenv("ETIMS_RULES__PKG_RULE", "qty")
    assert Settings(_env_file=None).body_rules() == ETIMS  # type: ignore[call-arg]


# --------------------------------------------------------------------------- itemCd


def test_an_arbitrary_item_code_is_refused_when_the_structure_rule_is_on() -> None:
    records = [item("KE2NTNO0000001"), item("ODOO0000000000000042")]
    assert errors_of(records, ETIMS) == []
    [error] = errors_of(records, GAVA)
    assert (error.index, error.path) == (1, "payload.itemCd")
    assert error.message.startswith("'ODOO0000000000000042' must be country (2 letters)")


def test_the_prefix_must_agree_with_the_records_own_codes() -> None:
    records = [
        item("KE2NTNO0000001", itemTyCd="3"),
        item("KE2NTNO0000002", qtyUnitCd="U"),
        b.sale(TIN, "00", "boxed", [BOXED], trd_invc_no="T3", at=AT),
    ]
    errors = errors_of(records, GAVA)
    assert [(e.index, e.path) for e in errors] == [
        (0, "payload.itemCd"),
        (1, "payload.itemCd"),
        (2, "payload.itemList.0.itemCd"),
    ]
    assert errors[0].message == "the itemCd prefix says '2' but itemTyCd is '3'"
    assert "a 1-character unit cannot be embedded" in errors[1].message
    assert errors[2].message == "the itemCd prefix says 'NT' but pkgUnitCd is 'BX'"
    assert errors_of(records[:2], ETIMS) == []


# --------------------------------------------------------------------------- pkg


def test_pkg_of_an_unpackaged_sale_line_is_checked_against_the_rule() -> None:
    two = sale("KE2NTNO0000001", qty=2, pkg=2)
    [error] = errors_of([two], GAVA)
    assert (error.path, error.message) == (
        "payload.itemList.0.pkg",
        "expected 1 (1 package for pkgUnitCd NT on this host), found 2",
    )
    assert errors_of([two], ETIMS) == []
    [error] = errors_of([sale("KE2NTNO0000001", qty=2, pkg=1)], ETIMS)
    assert error.message == "expected 2 (pkg = qty for pkgUnitCd NT on this host), found 1"


def test_builders_fill_pkg_by_the_rule() -> None:
    assert sale("KE2NTNO0000001", qty=3, rule="one_for_unpackaged")["payload"]["itemList"][0][
        "pkg"
    ] == Decimal(1)
    assert sale("KE2NTNO0000001", qty=3)["payload"]["itemList"][0]["pkg"] == Decimal(3)
    line = b.SaleLine("KE2BXNO0000001", "Soap", Decimal(3), Decimal(116), pkg_unit_cd="BX")
    packaged = b.sale(TIN, "00", "s", [line], trd_invc_no="T", at=AT, pkg_rule="one_for_unpackaged")
    assert packaged["payload"]["itemList"][0]["pkg"] == Decimal(3)  # a carton count is not 1
    for rule in ("qty", "one_for_unpackaged"):
        assert errors_of([sale("KE2NTNO0000001", qty=3, rule=rule)], BodyRules(pkg_rule=rule)) == []  # type: ignore[arg-type]


def test_csv_sales_get_pkg_by_the_rule() -> None:
    text = (
        "tin,bhf_id,idempotency_key,trd_invc_no,date,item_cd,item_nm,qty,price\n"
        "P051234567A,00,s1,T1,2026-11-22,KE2NTNO0000001,Soap,4,116\n"
    )
    gava = parse_csv(text, pkg_rule="one_for_unpackaged").records[0]
    assert gava["payload"]["itemList"][0]["pkg"] == Decimal(1)
    assert errors_of([gava], GAVA) == []
    assert parse_csv(text).records[0]["payload"]["itemList"][0]["pkg"] == Decimal(4)


# --------------------------------------------------------------------------- services


def test_a_service_in_a_stock_movement_is_refused_when_the_call_declares_it() -> None:
    line = b.SaleLine("KE3NTNO0000001", "Delivery", Decimal(1), Decimal(116))
    records = [
        item("KE3NTNO0000001", itemTyCd="3"),
        b.stock_io(TIN, "00", "in", [line], sar_ty_cd="06", at=AT),
        b.stock_master(TIN, "00", "master", item_cd="KE3NTNO0000001"),
    ]
    errors = errors_of(records, ETIMS)
    assert [(e.index, e.path) for e in errors] == [
        (1, "payload.itemList.0.itemCd"),
        (2, "payload.itemCd"),
    ]
    assert errors[0].message == (
        "item KE3NTNO0000001 is a service (itemTyCd 3, from its item record in this batch):"
        " services carry no stock, so they are never in stock movements or stock masters"
    )
    assert errors_of(records, BodyRules(no_service_stock=False)) == []


def test_with_the_structure_rule_on_the_prefix_tells_a_service() -> None:
    master = b.stock_master(TIN, "00", "master", item_cd="KE3NTNO0000001")
    [error] = errors_of([master], GAVA)
    assert "from its itemCd prefix" in error.message
    assert errors_of([master], ETIMS) == []  # structure rule off: the code means nothing


# --------------------------------------------------------------------------- till


def test_the_till_refuses_what_its_host_refuses_and_spools_nothing(tmp_path: Path) -> None:
    till = Till(
        tmp_path / "spool.db",
        "http://127.0.0.1:9",
        "k",
        tin=TIN,
        bhf_id="00",
        start=False,
        body_rules=GAVA,
    )
    try:
        with pytest.raises(InvalidRecords) as refused:
            till.enqueue_item("i1", item_cd="SOAP-1", item_nm="Soap", price=Decimal(116))
        assert [(e.index, e.path) for e in refused.value.errors] == [(0, "payload.itemCd")]
        assert till.spool.rows() == []
        till.enqueue_sale(
            "s1",
            [b.SaleLine("KE2NTNO0000001", "Soap", Decimal(2), Decimal(116))],
            trd_invc_no="T1",
            with_stock=False,
        )
        row = till.spool.get("s1", TIN)
        assert row is not None
        assert json.loads(row["envelope"])["payload"]["itemList"][0]["pkg"] == 1
    finally:
        till.close()


def test_rule_errors_come_back_with_the_other_errors_of_the_call() -> None:
    malformed = item("KE2NTNO0000001", taxTyCd="Z", qtyUnitCd="U")
    errors = errors_of([malformed, item("SOAP-1")], GAVA)
    # the malformed record is reported by its shape only; the other by the host rule
    assert [(e.index, e.path) for e in errors] == [(0, "payload.taxTyCd"), (1, "payload.itemCd")]
