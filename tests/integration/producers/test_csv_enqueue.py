"""``etims-relay enqueue FILE.csv`` end to end on PostgreSQL: all-or-nothing, line errors."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import RelayEnv

ITEMS = """tin,bhf_id,idempotency_key,item_cd,item_nm,price
P051234567A,00,item-1,KE2NTNO0000001,Soap 100g,116
P051234567A,00,item-2,KE2NTNO0000002,Rice 1kg,250
"""

SALES = """tin,bhf_id,idempotency_key,trd_invc_no,date,item_cd,item_nm,qty,price,depends_on
P051234567A,00,sale-1,INV-1,2026-11-22 09:00:00,KE2NTNO0000001,Soap 100g,2,116,item-1
P051234567A,00,sale-2,INV-2,2026-11-22 09:05:00,KE2NTNO0000002,Rice 1kg,1,250,item-2
"""


def test_csv_items_then_sales_are_enqueued(relay_env: RelayEnv, tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text(ITEMS)
    (tmp_path / "sales.csv").write_text(SALES)
    assert "enqueued 2 new job(s)" in relay_env.cli("enqueue", str(tmp_path / "items.csv")).stdout
    assert "enqueued 2 new job(s)" in relay_env.cli("enqueue", str(tmp_path / "sales.csv")).stdout
    again = relay_env.cli("enqueue", str(tmp_path / "sales.csv")).stdout
    assert "enqueued 0 new job(s), 2 already known" in again
    assert relay_env.status()["jobs"]["pending"] == 4


def test_one_bad_line_writes_nothing_and_names_line_and_column(
    relay_env: RelayEnv, tmp_path: Path
) -> None:
    bad = ITEMS + "P051234567A,00,item-3,KE2NTNO0000003,Tea,abc\nP051234567A,00,item-4,X,Tea,1\n"
    (tmp_path / "bad.csv").write_text(bad)
    result = relay_env.cli("enqueue", str(tmp_path / "bad.csv"), check=False)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["line 4: price: not a number: 'abc'"]
    unknown_dep = SALES.replace("item-2\n", "no-such-item\n")
    (tmp_path / "dep.csv").write_text(unknown_dep)
    result = relay_env.cli("enqueue", "--csv", str(tmp_path / "dep.csv"), check=False)
    assert result.returncode == 1
    assert "line 3: depends_on: unknown idempotency_key 'no-such-item'" in result.stdout
    assert sum(relay_env.status()["jobs"].values()) == 0
