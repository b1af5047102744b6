"""Shared fixtures: real PostgreSQL and Redis (never mocked), SQLite, simulator, worker processes.

PostgreSQL: the schema is migrated once per session into a template database; each test gets
a fresh clone (procrastinate's pattern), so tests never see each other's rows. Redis: each
test gets its own logical database, flushed before and after. A service that is down fails
the test: `.ci/run` starts them; nothing here skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from cryptography.fernet import Fernet

from simulator.process import SimulatorProcess
from tests.helpers import RelayEnv, WorkerPool
from worker.outbox import migrate
from worker.outbox.db import make_engine

#: In-process pipeline fixtures (pipeline, pipeline_factory) for any test that wants them.
pytest_plugins = ["tests.integration.pipeline_fixtures"]

PG_ADMIN_DSN = os.environ.get("ETIMS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_HOST = os.environ.get("ETIMS_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("ETIMS_TEST_REDIS_PORT", "6379"))
#: Logical Redis databases the suite may use (one per test, recycled).
REDIS_DB = int(os.environ.get("ETIMS_TEST_REDIS_DB", "5"))


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{dbname}"


def _admin() -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN_DSN, autocommit=True)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database migrated to head, used as the template of every test database."""
    name = f"etims_tpl_{os.getpid()}"
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate.upgrade(_pg_url(name))
    yield name
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    name = f"etims_t_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _pg_url(name)
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Both stores, for behaviour that must hold on each."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def engine(db_url: str) -> Iterator[object]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A flushed logical Redis database on the real server."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    client.flushdb()
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    client.flushdb()
    client.close()


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[SimulatorProcess]:
    """The OSCU simulator as a real child process on a free loopback port."""
    sim = SimulatorProcess(tmp_path / "ledger.jsonl", log_path=tmp_path / "simulator.log")
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def secret_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def relay_env(
    tmp_path: Path, pg_url: str, redis_url: str, simulator: SimulatorProcess, secret_key: str
) -> RelayEnv:
    """Environment for CLI/worker subprocesses: PostgreSQL + Redis + simulator, fast timeouts."""
    return RelayEnv.make(tmp_path, pg_url, redis_url, simulator.url, secret_key)


@pytest.fixture
def workers(relay_env: RelayEnv) -> Iterator[WorkerPool]:
    pool = WorkerPool(relay_env)
    yield pool
    pool.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skipped test is a failed test: it checked nothing (xfail is reported apart)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"
