"""Statements of the item catalogue (worker/outbox/catalog_models.py), one function each.

Lock order, shared with ``enqueue``: branch rows first (``reserve_seq``), then catalogue rows
in key order, then the tin's counter row; so two enqueues never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.outbox.catalog_models import item_catalog, item_code_counters
from worker.outbox.models import jobs

__all__ = [
    "advance_item_counter",
    "allocate_item_numbers",
    "item_types",
    "job_payloads",
    "record_item_types",
]

#: Keys per IN list: well below SQLite's and PostgreSQL's parameter limits.
_BATCH = 500


def _dialect(conn: Connection) -> Any:
    return sqlite if conn.dialect.name == "sqlite" else postgresql


def item_types(conn: Connection, tin: str, codes: Sequence[str]) -> dict[str, str]:
    """``{itemCd: itemTyCd}`` of the enqueued items of ``tin`` among ``codes``."""
    found: dict[str, str] = {}
    unique = sorted(set(codes))
    for start in range(0, len(unique), _BATCH):
        rows = conn.execute(
            select(item_catalog.c.item_cd, item_catalog.c.item_ty_cd).where(
                item_catalog.c.tin == tin,
                item_catalog.c.item_cd.in_(unique[start : start + _BATCH]),
            )
        )
        found.update({str(code): str(item_type) for code, item_type in rows})
    return found


def record_item_types(conn: Connection, tin: str, types: Mapping[str, str]) -> None:
    """Upsert the type of each item code of ``tin`` (the latest item job wins)."""
    rows = [
        {"tin": tin, "item_cd": code, "item_ty_cd": item_type}
        for code, item_type in sorted(types.items())
    ]
    for start in range(0, len(rows), _BATCH):
        statement = _dialect(conn).insert(item_catalog).values(rows[start : start + _BATCH])
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["tin", "item_cd"],
                set_={"item_ty_cd": statement.excluded.item_ty_cd},
            )
        )


def _ensure_counter(conn: Connection, tin: str) -> None:
    statement = _dialect(conn).insert(item_code_counters).values(tin=tin, next_number=1)
    conn.execute(statement.on_conflict_do_nothing(index_elements=["tin"]))


def allocate_item_numbers(conn: Connection, tin: str, count: int = 1) -> int:
    """Reserve ``count`` consecutive running numbers of ``tin``; return the first.

    One UPDATE ... RETURNING: PostgreSQL holds the row lock until commit and SQLite has one
    writer at a time, so two processes never receive the same number.
    """
    _ensure_counter(conn, tin)
    new_next = conn.execute(
        update(item_code_counters)
        .where(item_code_counters.c.tin == tin)
        .values(next_number=item_code_counters.c.next_number + count)
        .returning(item_code_counters.c.next_number)
    ).scalar_one()
    return int(new_next) - count


def advance_item_counter(conn: Connection, tin: str, used: int) -> None:
    """A conforming code with running number ``used`` was enqueued: never hand it out."""
    _ensure_counter(conn, tin)
    conn.execute(
        update(item_code_counters)
        .where(item_code_counters.c.tin == tin, item_code_counters.c.next_number <= used)
        .values(next_number=used + 1)
    )


def job_payloads(conn: Connection, tin: str, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``{idempotency_key: (kind, payload JSON)}`` of the jobs of ``tin`` with these keys."""
    found: dict[str, tuple[str, str]] = {}
    unique = sorted(set(keys))
    for start in range(0, len(unique), _BATCH):
        rows = conn.execute(
            select(jobs.c.idempotency_key, jobs.c.kind, jobs.c.payload).where(
                jobs.c.tin == tin, jobs.c.idempotency_key.in_(unique[start : start + _BATCH])
            )
        )
        found.update({str(key): (str(kind), str(payload)) for key, kind, payload in rows})
    return found
