"""Engines for the outbox: SQLite (embedded default) and PostgreSQL (production).

SQLite runs in WAL mode with ``synchronous=NORMAL`` (no fsync per commit, which the per-job
writes would pay; still crash-safe for committed transactions at the OS level) and every transaction
starts with ``BEGIN IMMEDIATE``: several processes write the same file, and a deferred
transaction that later upgrades to a write lock fails with "database is locked" instead of
waiting. PostgreSQL URLs are normalised to the psycopg 3 driver; the pool is sized by
``ETIMS_DATABASE__*`` and each connection names its process in ``application_name``, so that
``pg_stat_activity`` tells a worker's connections from an intake's.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from schemas.settings import DatabaseSettings

#: How long a SQLite writer waits for the lock before giving up (seconds).
SQLITE_BUSY_TIMEOUT_S = 60
#: PostgreSQL truncates ``application_name`` to 63 bytes.
APPLICATION_NAME_MAX = 63


def normalize_url(url: str) -> str:
    """Map ``postgres://`` and ``postgresql://`` to the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def application_name(role: str) -> str:
    """``etims-relay-<role>:<pid>@<host>``: which process holds a PostgreSQL connection."""
    name = f"etims-relay-{role}:{os.getpid()}@{socket.gethostname()}"
    return name.encode()[:APPLICATION_NAME_MAX].decode(errors="ignore")


def make_engine(
    url: str,
    *,
    pool: DatabaseSettings | None = None,
    role: str | None = None,
    echo: bool = False,
    pre_ping: bool = False,
) -> Engine:
    """Create the engine for ``url`` with the settings each backend needs.

    ``pool`` sizes the PostgreSQL pool (default: :class:`DatabaseSettings`' defaults). A
    checkout that finds the pool exhausted waits up to ``pool_timeout_s``, then raises
    :class:`sqlalchemy.exc.TimeoutError`. ``role`` (worker, intake, cli) goes into each
    connection's ``application_name`` unless the URL sets one.

    ``pre_ping`` is for the intake and the CLI: each checkout first tests its connection and
    silently replaces one a restart, failover or ``pg_terminate_backend`` broke, so a user
    never sees that error. The drain leaves it off (see below).
    """
    url = normalize_url(url)
    if is_sqlite(url):
        return _sqlite_engine(url, echo=echo)
    pool = pool or DatabaseSettings()
    connect_args: dict[str, Any] = {}
    if role is not None and "application_name" not in make_url(url).query:
        connect_args["application_name"] = application_name(role)
    return create_engine(
        url,
        connect_args=connect_args,
        pool_size=pool.pool_size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.pool_timeout_s,
        # The drain pings nothing (a ping is an extra round trip per transaction):
        # after a restart or failover the first statement on a stale connection fails, the
        # pool invalidates every older connection, and the drain is retried by its next wake.
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        echo=echo,
    )


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        echo=echo,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below own transaction start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
