"""Hot statements: one ``:name`` text, the right placeholders for each driver."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import create_engine

from worker.outbox import hot


def test_named_parameters_become_positional_for_both_drivers_in_order() -> None:
    statement = hot.HotStatement(
        "UPDATE t SET a = :a, b = :b::text WHERE id = :id AND owner = :a RETURNING a"
    )
    assert statement.names == ("a", "b", "id", "a")
    assert (
        statement.sqlite == "UPDATE t SET a = ?, b = ?::text WHERE id = ? AND owner = ? RETURNING a"
    )
    assert statement.postgresql.count("%s") == 4 and "::text" in statement.postgresql
    assert statement.returns_rows


def test_literal_percent_or_question_mark_is_refused() -> None:
    with pytest.raises(ValueError, match="literal"):
        hot.HotStatement("SELECT * FROM t WHERE name LIKE 'a%'")


def test_rows_read_by_attribute_and_rowcount_on_sqlite() -> None:
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        conn.exec_driver_sql("INSERT INTO t (name) VALUES ('a'), ('b')")
        rows, _ = hot.run(
            conn, hot.HotStatement("SELECT id, name FROM t WHERE id = :id"), {"id": 2}
        )
        assert [(r.id, r.name) for r in rows] == [(2, "b")]
        _, count = hot.run(conn, hot.HotStatement("UPDATE t SET name = :n"), {"n": "c"})
        assert count == 2
        inserted = hot.insert_rows(conn, "t", ["name"], [{"name": "x"}, {"name": "y"}], "id, name")
        assert sorted(r.name for r in inserted) == ["x", "y"]
    assert sqlite3.sqlite_version_info >= (3, 35)  # RETURNING, which the drain relies on
