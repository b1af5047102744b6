"""The one mapping of database errors: both drivers' classes and SQLAlchemy's wrappers of
them mean the same to every entry point (retry the transaction, answer 503, or a bug)."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc

from tests.conftest import PG_ADMIN_DSN
from worker.outbox.dberrors import DbFailure, classify, describe


def _raised(action: object) -> BaseException:
    try:
        action()  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("nothing raised")


def test_unique_violations_are_conflicts_on_both_drivers_and_wrapped(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "a.db")
    raw.execute("CREATE TABLE t (k TEXT UNIQUE)")
    raw.execute("INSERT INTO t VALUES ('a')")
    assert classify(_raised(lambda: raw.execute("INSERT INTO t VALUES ('a')"))) == "conflict"
    with psycopg.connect(PG_ADMIN_DSN) as pg:
        pg.execute("CREATE TEMP TABLE t (k TEXT UNIQUE)")
        pg.execute("INSERT INTO t VALUES ('a')")
        error = _raised(lambda: pg.execute("INSERT INTO t VALUES ('a')"))
    assert isinstance(error, psycopg.errors.UniqueViolation)
    assert classify(error) is DbFailure.CONFLICT
    engine = create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO t VALUES ('a')"))
    with engine.begin() as conn:
        wrapped = _raised(lambda: conn.execute(text("INSERT INTO t VALUES ('a')")))
    assert isinstance(wrapped, sa_exc.IntegrityError)
    assert classify(wrapped) is DbFailure.CONFLICT
    assert describe(wrapped) == "IntegrityError"


def test_an_unreachable_database_is_unavailable_on_both_drivers_and_wrapped() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = f"postgresql://postgres@127.0.0.1:{port}/test"
    assert classify(_raised(lambda: psycopg.connect(dsn, connect_timeout=2))) == "unavailable"
    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
    wrapped = _raised(engine.connect)
    assert isinstance(wrapped, sa_exc.OperationalError)
    assert classify(wrapped) is DbFailure.UNAVAILABLE
    missing = create_engine("sqlite:////nonexistent-dir/x.db")
    assert classify(_raised(missing.connect)) is DbFailure.UNAVAILABLE


@pytest.mark.parametrize(
    "error", [ValueError("x"), KeyError("k"), sqlite3.ProgrammingError("bad SQL")]
)
def test_anything_else_is_left_to_surface(error: BaseException) -> None:
    assert classify(error) is None
