"""Which database errors a caller may answer calmly, for both drivers, in one place.

Errors reach callers in three dresses: SQLAlchemy's wrappers (``IntegrityError``,
``OperationalError``... with the driver's error in ``.orig``), psycopg's own classes raised
by the statements run on the driver's cursor (the PostgreSQL drain's per-job statements in
:mod:`worker.outbox.branch_store`, enqueue's insert in :mod:`worker.outbox.hot`), and
sqlite3's.
Entry points (the intake, the CLI, the admin API) ask :func:`classify` instead of naming
classes, so a new path through the driver cannot turn a race into a 500 again::

    DatabaseError (any of the three dresses)
    +-- CONFLICT      a concurrent writer won: unique violation, serialization failure,
    |                 deadlock. Retrying the whole transaction is safe and usually succeeds.
    +-- UNAVAILABLE   the database cannot be reached or refused service: connection refused
    |                 or dropped, admin shutdown, pool exhausted, SQLite locked. Answer 503 and
    |                 let the client retry; nothing was committed.
    +-- None          anything else (a bug, a schema mismatch): let it surface.
"""

from __future__ import annotations

import sqlite3
from enum import StrEnum

import psycopg
from psycopg import errors as pg_errors
from sqlalchemy import exc as sa_exc

__all__ = ["DbFailure", "classify", "describe"]


class DbFailure(StrEnum):
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"


#: Concurrent writers: the transaction lost a race and may simply be run again.
_CONFLICTS: tuple[type[BaseException], ...] = (
    sqlite3.IntegrityError,
    pg_errors.UniqueViolation,
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
)

#: The database is not there (or not for us right now).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    sqlite3.OperationalError,  # "database is locked" past the busy timeout, disk I/O errors
    psycopg.OperationalError,  # connection refused/lost, admin shutdown, too many clients
    psycopg.InterfaceError,  # a connection already closed
    sa_exc.TimeoutError,  # the pool had no connection to give within its timeout
)


def classify(exc: BaseException) -> DbFailure | None:
    """What ``exc`` means for the caller, unwrapping SQLAlchemy's wrapper if there is one."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return DbFailure.UNAVAILABLE
        if exc.orig is not None:
            inner = classify(exc.orig)
            if inner is not None:
                return inner
        if isinstance(exc, sa_exc.IntegrityError):
            return DbFailure.CONFLICT
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return DbFailure.UNAVAILABLE
        return None
    if isinstance(exc, _CONFLICTS):
        return DbFailure.CONFLICT
    if isinstance(exc, _UNAVAILABLE):
        return DbFailure.UNAVAILABLE
    return None


def describe(exc: BaseException) -> str:
    """A short, secret-free name for logs: the driver's class, never its message (which may
    quote a DSN or a row)."""
    inner = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    return type(inner).__name__
