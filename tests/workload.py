"""Job workloads for tests: items, opening stock, then sales each followed by their stock jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from producers import builders as b

TIN = "P051234567A"


def item_code(n: int) -> str:
    return f"KE2NTNO{n:07d}"


def branch_ids(count: int) -> list[str]:
    return [f"{i:02d}" for i in range(count)]


def branch_workload(
    bhf_id: str, jobs: int, *, tin: str = TIN, items: int = 2, opening: int = 10_000
) -> list[dict[str, Any]]:
    """About ``jobs`` envelopes for one branch, in causal order: 2 per item up front, then
    sales (3 jobs each: sale, stock-out 11, stock master)."""
    now = datetime.now(UTC)
    records: list[dict[str, Any]] = []
    lines = []
    for n in range(1, items + 1):
        code = item_code(n)
        records.append(
            b.item(
                tin,
                bhf_id,
                f"{bhf_id}:item:{n}",
                item_cd=code,
                item_nm=f"Item {n}",
                price=Decimal("116"),
            )
        )
        lines.append(b.SaleLine(code, f"Item {n}", Decimal(opening), Decimal("116")))
    records.append(
        b.stock_io(
            tin,
            bhf_id,
            f"{bhf_id}:opening",
            lines,
            sar_ty_cd="06",
            at=now,
            depends_on=[r["idempotency_key"] for r in records],
        )
    )
    sale = 0
    while len(records) + 3 <= jobs:
        sale += 1
        code = item_code(1 + sale % items)
        line = b.SaleLine(code, "Item", Decimal(1 + sale % 3), Decimal("116"))
        records += b.sale_with_stock(
            tin,
            bhf_id,
            f"{bhf_id}:sale:{sale}",
            [line],
            trd_invc_no=f"{bhf_id}-T{sale}",
            at=now,
            depends_on=[f"{bhf_id}:opening"] if sale == 1 else (),
        )
    return records


def workload(branches: int, jobs_per_branch: int, *, tin: str = TIN) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for bhf in branch_ids(branches):
        records += branch_workload(bhf, jobs_per_branch, tin=tin)
    return records
