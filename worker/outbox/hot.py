"""Enqueue's multi-row insert, run as one driver-level statement.

A batch of 100 jobs went through SQLAlchemy's per-row parameter processing at a quarter of
enqueue's CPU; one ``INSERT ... VALUES (...), (...) RETURNING`` with positional parameters
does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row

__all__ = ["insert_rows"]


def insert_rows(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    returning: str,
) -> list[Row[Any]]:
    """One multi-row ``INSERT ... RETURNING`` (the caller vouches for the names).

    The rows come back in no promised order: callers match them by a returned key.
    """
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    one = "(" + ", ".join([mark] * len(columns)) + ")"
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 - schema names
        + ", ".join([one] * len(rows))
        + f" RETURNING {returning}"
    )
    values = tuple([row[c] for row in rows for c in columns])
    return list(conn.exec_driver_sql(sql, values))
