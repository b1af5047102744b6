"""Migrations are tested code: fresh upgrade, no drift from the models, down and up again."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from worker.outbox import migrate
from worker.outbox.db import make_engine
from worker.outbox.tables import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    import uuid

    import psycopg

    from tests.conftest import PG_ADMIN_DSN, _pg_url

    name = f"etims_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    request.addfinalizer(lambda: _drop(name))
    return _pg_url(name)


def _drop(name: str) -> None:
    import psycopg

    from tests.conftest import PG_ADMIN_DSN

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_matches_models_then_downgrade_and_upgrade_again(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    migrate.check(empty_db)  # raises if the models and the migrated schema differ
    engine = make_engine(empty_db)
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    migrate.downgrade(empty_db, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(empty_db)
    migrate.check(empty_db)
    engine.dispose()
