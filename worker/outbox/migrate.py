"""Alembic, driven from code: ``etims-relay db upgrade`` and the tests call these.

Workers never migrate on start; a prestart step (the CLI, a Kubernetes Job, the compose
one-shot service) does, so a fleet of old and new workers never races a schema change.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from worker.outbox.db import normalize_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


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
