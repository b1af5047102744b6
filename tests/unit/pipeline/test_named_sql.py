"""The drain's SQL is text kept in files, loaded by name; enqueue's multi-row insert."""

from __future__ import annotations

import re
import sqlite3

import pytest
from sqlalchemy import create_engine

from schemas.jobs import ACTIVE_STATES
from worker.outbox import hot
from worker.outbox.named_sql import load, parse


def test_statements_are_found_by_name_without_their_comment_lines() -> None:
    texts = parse(
        "-- a file header\n"
        "-- name: first\n-- what it does, with :not_a_parameter\nSELECT 1\n\n"
        "-- name: second\nUPDATE t\n   SET a = :a\n"
    )
    assert texts == {"first": "SELECT 1", "second": "UPDATE t\n   SET a = :a"}


def test_a_name_defined_twice_or_left_empty_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")
    with pytest.raises(ValueError, match="no SQL"):
        parse("-- name: a\n-- only a comment\n")


def test_the_head_read_names_exactly_the_active_states() -> None:
    # Written out literally so that the planners use the partial index of active jobs:
    # a state added to ACTIVE_STATES must be added there too.
    heads = [
        load("drain.sql")["read_head"],
        load("drain_postgresql.sql")["accept_job_reading_head"],
        load("drain.sql")["sale_past_deferred_stock"],
        load("drain.sql")["merge_candidates"],
    ]
    for head in heads:
        listed = re.search(r"state IN \(([^)]*)\)", head.text)
        assert listed is not None
        named = {s.strip(" '") for s in listed.group(1).split(",")}
        assert named == {s.value for s in ACTIVE_STATES}


def test_multi_row_insert_returns_every_row_on_sqlite() -> None:
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        inserted = hot.insert_rows(conn, "t", ["name"], [{"name": "x"}, {"name": "y"}], "id, name")
        assert sorted(r.name for r in inserted) == ["x", "y"]
    assert sqlite3.sqlite_version_info >= (3, 35)  # RETURNING, which the drain relies on
