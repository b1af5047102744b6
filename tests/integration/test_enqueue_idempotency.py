"""Idempotent, all-or-nothing intake (invariants 4 and 7), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from producers import builders as b
from producers.enqueue import IdempotencyConflict, InvalidRecords, enqueue
from tests.workload import TIN, item_code
from worker.outbox.db import make_engine
from worker.outbox.models import jobs

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
WATER = b.SaleLine(item_code(1), "Water", Decimal("2"), Decimal("116"))


def count_jobs(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())


def test_same_key_and_payload_twice_is_one_job(engine) -> None:
    sale = b.sale(TIN, "00", "till-3:000123", [WATER], trd_invc_no="000123", at=NOW)
    first = enqueue(engine, [sale])
    # the same record as an HTTP client would send it: numbers as JSON floats
    again = enqueue(engine, [json.loads(json.dumps(sale, default=float))])
    assert again[0].id == first[0].id and not again[0].created
    assert count_jobs(engine) == 1


def test_same_key_with_another_payload_is_a_conflict_and_writes_nothing(engine) -> None:
    enqueue(engine, [b.sale(TIN, "00", "till-3:000123", [WATER], trd_invc_no="000123", at=NOW)])
    changed = b.sale(TIN, "00", "till-3:000123", [WATER], trd_invc_no="000999", at=NOW)
    fresh = b.sale(TIN, "00", "till-3:000124", [WATER], trd_invc_no="000124", at=NOW)
    with pytest.raises(IdempotencyConflict) as caught:
        enqueue(engine, [fresh, changed])
    assert caught.value.index == 1 and "till-3:000123" in str(caught.value)
    assert count_jobs(engine) == 1  # the fresh record of the refused call was not written


def test_keys_are_scoped_per_tin(engine) -> None:
    enqueue(engine, [b.sale(TIN, "00", "k1", [WATER], trd_invc_no="1", at=NOW)])
    other = enqueue(engine, [b.sale("P000000001Z", "00", "k1", [WATER], trd_invc_no="2", at=NOW)])
    assert other[0].created
    assert count_jobs(engine) == 2


def test_any_invalid_record_refuses_the_batch_naming_index_and_field(engine) -> None:
    good = b.sale(TIN, "00", "ok", [WATER], trd_invc_no="1", at=NOW)
    overlong = b.sale(TIN, "00", "long", [WATER], trd_invc_no="x" * 51, at=NOW)
    bad_date = b.sale(TIN, "00", "date", [WATER], trd_invc_no="3", at=NOW)
    bad_date["payload"]["salesDt"] = "2026-11-20"
    wrong_total = b.sale(TIN, "00", "total", [WATER], trd_invc_no="4", at=NOW)
    wrong_total["payload"]["itemList"][0]["taxblAmt"] = Decimal("232")
    bad_code = b.sale(TIN, "00", "code", [WATER], trd_invc_no="5", at=NOW)
    bad_code["payload"]["itemList"][0]["taxTyCd"] = "Z"
    numbered = b.sale(TIN, "00", "numbered", [WATER], trd_invc_no="6", at=NOW)
    numbered["payload"]["invcNo"] = 7
    with pytest.raises(InvalidRecords) as caught:
        enqueue(engine, [good, overlong, bad_date, wrong_total, bad_code, numbered])
    errors = {(e.index, e.path) for e in caught.value.errors}
    assert (1, "payload.trdInvcNo") in errors
    assert (2, "payload.salesDt") in errors
    assert (3, "payload.itemList.0.taxblAmt") in errors
    assert any(i == 4 and "taxTyCd" in p for i, p in errors)
    assert any(i == 5 for i, _ in errors)
    assert count_jobs(engine) == 0


def test_dependencies_must_exist_first(engine) -> None:
    out = b.stock_io(TIN, "00", "out", [WATER], sar_ty_cd="11", at=NOW, depends_on=["no-sale"])
    with pytest.raises(InvalidRecords) as caught:
        enqueue(engine, [out])
    assert caught.value.errors[0].path == "depends_on.0"
    assert "no-sale" in caught.value.errors[0].message


def test_cli_enqueue_reports_line_and_path_and_writes_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    from tests.helpers import RelayEnv

    relay = RelayEnv.make(tmp_path, sqlite_url, "", "http://127.0.0.1:9", "")
    good = b.sale(TIN, "00", "a", [WATER], trd_invc_no="1", at=NOW)
    bad = b.sale(TIN, "00", "b", [WATER], trd_invc_no="2", at=NOW)
    bad["payload"]["cfmDt"] = "yesterday"
    text = json.dumps(good, default=str) + "\n\n" + json.dumps(bad, default=str) + "\n{oops\n"
    result = relay.cli("enqueue", "-", input=text, check=False)
    assert result.returncode == 1
    assert "line 4: (json)" in result.stdout
    result = relay.cli("enqueue", "-", input=text.rsplit("{oops", 1)[0], check=False)
    assert result.returncode == 1
    assert "line 3: payload.cfmDt:" in result.stdout
    engine = make_engine(sqlite_url)
    assert count_jobs(engine) == 0
    engine.dispose()
