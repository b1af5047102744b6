"""CSV bulk import: columns to envelopes, and errors that name the line and the column."""

from __future__ import annotations

from producers.csv_import import CsvBatch, parse_csv
from producers.enqueue import InvalidRecords, parse_envelopes

ITEMS = """tin,bhf_id,idempotency_key,item_cd,item_nm,price,tax_ty_cd
P051234567A,00,item-1,KE2NTNO0000001,Soap 100g,116,B
P051234567A,00,item-2,KE2NTNO0000002,"Rice, 1kg",250.50,E
"""

SALES = """tin,bhf_id,idempotency_key,trd_invc_no,date,item_cd,item_nm,qty,price,with_stock
P051234567A,00,sale-1,INV-1,2026-11-22 09:00:00,KE2NTNO0000001,Soap 100g,2,116,N
P051234567A,00,sale-2,INV-2,20261122123000,KE2NTNO0000001,Soap 100g,1,116,Y
"""


def test_items_file_becomes_item_envelopes() -> None:
    batch = parse_csv(ITEMS)
    assert batch.errors == [] and batch.lines == [2, 3]
    assert [r["kind"] for r in batch.records] == ["item", "item"]
    assert batch.records[1]["payload"]["itemNm"] == "Rice, 1kg"
    assert batch.records[1]["payload"]["taxTyCd"] == "E"
    assert len(parse_envelopes(batch.records)) == 2


def test_sales_file_with_and_without_stock_jobs() -> None:
    batch = parse_csv(SALES)
    assert batch.errors == []
    assert [r["idempotency_key"] for r in batch.records] == [
        "sale-1",
        "sale-2",
        "sale-2:stock-out",
        "sale-2:stock-master:KE2NTNO0000001",
    ]
    assert batch.lines == [2, 3, 3, 3]
    assert batch.records[0]["payload"]["cfmDt"] == "20261122090000"  # read as Kenyan time
    assert batch.records[1]["payload"]["cfmDt"] == "20261122123000"


def test_cell_and_header_errors_name_line_and_column() -> None:
    text = (
        "tin,bhf_id,idempotency_key,trd_invc_no,date,item_cd,item_nm,qty,price,colour\n"
        "P051234567A,00,s1,I1,2026-11-22,KE2NTNO0000001,Soap,two,116,red\n"
    )
    assert [str(e) for e in parse_csv(text).errors] == ["line 1: header: unknown column colour"]
    text = (
        "tin,bhf_id,idempotency_key,trd_invc_no,item_cd,item_nm,qty,price,date\n"
        "P051234567A,00,s1,I1,KE2NTNO0000001,Soap,two,116,2026-11-22\n"
        "P051234567A,00,s2,I2,KE2NTNO0000001,Soap,1,,2026-11-22\n"
        "P051234567A,00,s3,I3,KE2NTNO0000001,Soap,1,116,22/11/2026\n"
    )
    assert [str(e) for e in parse_csv(text).errors] == [
        "line 2: qty: not a number: 'two'",
        "line 3: price: required",
        "line 4: date: not a date: '22/11/2026' (use YYYY-MM-DD HH:MM:SS)",
    ]
    assert "not an items file" in str(parse_csv("a,b\n1,2\n").errors[0])


def test_a_sales_file_without_a_date_column_is_refused_at_the_header() -> None:
    text = (
        "tin,bhf_id,idempotency_key,trd_invc_no,item_cd,item_nm,qty,price\n"
        "P051234567A,00,s1,I1,KE2NTNO0000001,Soap,1,116\n"
    )
    batch = parse_csv(text)
    assert batch.records == []
    assert [str(e) for e in batch.errors] == ["line 1: header: missing column date"]


def test_enqueue_error_paths_map_back_to_columns() -> None:
    text = ITEMS.replace(",B\n", ",Q\n").replace("KE2NTNO0000002", "K" * 25)
    batch = parse_csv(text)
    try:
        parse_envelopes(batch.records)
    except InvalidRecords as exc:
        shown = sorted(
            f"line {batch.lines[e.index]}: {CsvBatch.column_for(e.path)}" for e in exc.errors
        )
    assert shown == ["line 2: tax_ty_cd", "line 3: item_cd"]
    assert CsvBatch.column_for("payload.itemList.0.qty") == "qty"
    assert CsvBatch.column_for("payload.totAmt") == "payload.totAmt"
