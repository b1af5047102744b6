"""Alembic, driven from code: ``etims-relay db upgrade`` and the tests call these.

Workers never migrate on start; a prestart step (the CLI, a Kubernetes Job, the compose
one-shot service) does, so a fleet of old and new workers never races a schema change.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from worker.outbox.db import is_sqlite, normalize_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Key of the PostgreSQL advisory lock held while migrating (any constant both sides agree
#: on; this one spells "etimsmig" in ASCII).
ADVISORY_LOCK_KEY = 0x6574696D736D6967


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate to ``revision``; a concurrent run waits for this one, then finds nothing to do."""
    with migration_lock(database_url):
        command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    with migration_lock(database_url):
        command.downgrade(alembic_config(database_url), revision)


@contextmanager
def migration_lock(database_url: str) -> Iterator[None]:
    """One migration at a time per database, across processes and hosts.

    Two ``db upgrade`` runs (two deploy hooks, a prestart step racing a manual run) would
    otherwise both see the old revision and both create the same tables. PostgreSQL: a
    session advisory lock on a connection of its own. SQLite: an exclusive ``flock`` on a
    file next to the database (a file-level lock works for the processes of one host, the
    only ones that can share a SQLite file).
    """
    if is_sqlite(database_url):
        database = make_url(normalize_url(database_url)).database
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    engine = create_engine(normalize_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()


def check(database_url: str) -> None:
    """Raise if the models differ from the migrated schema (``alembic check``)."""
    command.check(alembic_config(database_url))


def current_revisions(database_url: str) -> tuple[str, ...]:
    """The revision(s) the database is at; empty when it was never migrated."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(normalize_url(database_url))
    try:
        with engine.connect() as conn:
            return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
    finally:
        engine.dispose()


def head_revisions(database_url: str) -> tuple[str, ...]:
    """The revision(s) this code's migrations end at."""
    from alembic.script import ScriptDirectory

    return tuple(sorted(ScriptDirectory.from_config(alembic_config(database_url)).get_heads()))
