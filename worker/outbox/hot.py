"""The drain's per-job statements (and enqueue's multi-row insert), run on the driver's cursor
instead of through SQLAlchemy.

A drain issues about six statements per job. Through SQLAlchemy Core each execution costs
~45 µs of client CPU on top of the driver's ~60 µs (parameter processing, result metadata,
execution context), a tenth of a job's whole CPU budget; ``bench/pipeline.py
--profile-drain`` shows it. These few statements are plain SQL valid on both backends,
written once with ``:name`` parameters and run on the DBAPI connection of the caller's
SQLAlchemy transaction (same transaction, same commit). Everything else stays on Core.

Only :mod:`worker.outbox.queries` uses this module.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections import namedtuple
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import Connection

__all__ = ["HotStatement", "atomic", "insert_rows", "run", "step"]


class HotStatement:
    """One SQL text with ``:name`` parameters, turned into positional placeholders for both
    drivers (``%s`` for psycopg, ``?`` for sqlite3): binding a tuple skips the per-execution
    work of named parameters, which was a tenth of the drain's CPU in psycopg."""

    __slots__ = ("names", "postgresql", "returns_rows", "source", "sqlite")

    def __init__(self, sql: str, *, returns_rows: bool | None = None) -> None:
        if "%" in sql or "?" in sql:
            raise ValueError("write parameters as :name; a literal % or ? is not supported")
        #: as written (``:name``), e.g. for ``sqlalchemy.text``
        self.source = sql
        self.names = tuple(_PARAM.findall(sql))
        self.sqlite = _PARAM.sub("?", sql)
        self.postgresql = _PARAM.sub("%s", sql)
        if returns_rows is None:  # a RETURNING inside a CTE does not count: say so
            returns_rows = sql.lstrip().upper().startswith("SELECT") or " RETURNING " in sql
        self.returns_rows = returns_rows

    def __repr__(self) -> str:
        return f"HotStatement({self.source!r})"


#: ``:name`` but not a ``::type`` cast.
_PARAM = re.compile(r"(?<!:):(\w+)")


def run(
    conn: Connection, statement: HotStatement, params: Mapping[str, Any]
) -> tuple[list[Any], int]:
    """Execute inside ``conn``'s transaction; return (rows with attribute access, rowcount).

    A driver error leaves the connection to SQLAlchemy as its own errors would: a broken
    connection is invalidated so the pool never hands it out again.
    """
    values = tuple([params[name] for name in statement.names])
    sql = statement.sqlite if conn.dialect.name == "sqlite" else statement.postgresql
    return _execute(conn, sql, values, statement.returns_rows)


def insert_rows(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    returning: str,
) -> list[Any]:
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
    return _execute(conn, sql, values, True)[0]


@contextlib.contextmanager
def step(conn: Connection, *, single_statements: bool) -> Iterator[None]:
    """One drain step: a transaction, unless every write in it is one self-contained statement.

    On PostgreSQL such a step runs with the driver in autocommit: each statement commits on
    its own, which saves the BEGIN and COMMIT round trips (two of a job's five). That is
    only sound for statements that are atomic and fenced by themselves, like the drain's
    ``update_job_fenced``; a part that writes more than one statement goes in
    :func:`atomic`. On SQLite, and when ``single_statements`` is false, a plain transaction.
    """
    if not single_statements or conn.dialect.name != "postgresql":
        with conn.begin():
            yield
        return
    driver = conn.connection.driver_connection
    driver.autocommit = True  # type: ignore[union-attr]
    try:
        yield
        if conn.in_transaction():  # a Core read began SQLAlchemy's bookkeeping: close it
            conn.commit()
    finally:
        if conn.in_transaction():
            conn.rollback()
        if not getattr(driver, "closed", True):
            driver.autocommit = False  # type: ignore[union-attr]


@contextlib.contextmanager
def atomic(conn: Connection) -> Iterator[None]:
    """Several statements that must commit together, inside a :func:`step`: a transaction of
    their own in an autocommit step; nothing more inside a transaction already."""
    driver = conn.connection.driver_connection
    if conn.dialect.name != "postgresql" or not getattr(driver, "autocommit", False):
        yield
        return
    if conn.in_transaction():
        conn.commit()  # SQLAlchemy's bookkeeping only: the driver committed each statement
    driver.autocommit = False  # type: ignore[union-attr]
    try:
        with conn.begin():
            yield
    finally:
        if not getattr(driver, "closed", True):
            driver.autocommit = True  # type: ignore[union-attr]


def _execute(
    conn: Connection, sql: str, values: tuple[Any, ...], returns_rows: bool
) -> tuple[list[Any], int]:
    fairy = conn.connection
    driver = fairy.driver_connection
    try:
        if conn.dialect.name == "sqlite":
            cursor = driver.cursor()  # type: ignore[union-attr]
            try:
                cursor.row_factory = _sqlite_row
                cursor.execute(sql, values)
                rows = cursor.fetchall() if returns_rows else []
                return rows, cursor.rowcount
            finally:
                cursor.close()
        with driver.cursor(row_factory=namedtuple_row) as cursor:  # type: ignore[union-attr]
            cursor.execute(sql, values)
            rows = cursor.fetchall() if returns_rows else []
            return rows, cursor.rowcount
    except Exception as exc:
        if getattr(driver, "broken", False) or getattr(driver, "closed", False):
            fairy.invalidate(exc)
        raise


def _sqlite_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Any:
    return _row_class(tuple(d[0] for d in cursor.description))(*values)


@lru_cache(maxsize=64)
def _row_class(names: tuple[str, ...]) -> Any:
    return namedtuple("Row", names)
