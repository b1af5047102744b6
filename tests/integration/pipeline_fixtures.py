"""An in-process pipeline: outbox (SQLite or PostgreSQL) + drain + the simulator in a thread.

Drains run synchronously in the test (burst mode, as arq's tests do), so each test reads as
a story: enqueue, drain, look at what KRA recorded and what the outbox says.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from producers.enqueue import Enqueued, enqueue, options_from_settings
from schemas.settings import DrainSettings, OscuSettings, RetrySettings, Settings
from simulator.runner import SimulatorHandle, run_simulator
from tests.workload import TIN
from worker.device_init import init_device
from worker.drain import DrainReport, drain
from worker.outbox import queries as q
from worker.outbox.models import jobs
from worker.runtime import Runtime, build_runtime


@dataclass
class Pipeline:
    runtime: Runtime
    sim: SimulatorHandle

    def enqueue(self, records: list[dict[str, Any]]) -> list[Enqueued]:
        return enqueue(
            self.runtime.engine, records, options=options_from_settings(self.runtime.settings)
        )

    def drain(self, bhf_id: str = "00", *, rounds: int = 20) -> DrainReport:
        """Drain a branch until it is idle, parked or stuck waiting (bounded)."""
        with self.runtime.engine.connect() as conn:
            branch = q.get_branch(conn, TIN, bhf_id)
        assert branch is not None
        report = drain(int(branch.id), self.runtime.drain_context())
        for _ in range(rounds):
            if report.status in ("idle", "parked"):
                break
            report = drain(int(branch.id), self.runtime.drain_context())
        return report

    def job(self, key: str) -> Any:
        with self.runtime.engine.connect() as conn:
            return conn.execute(
                select(jobs).where(jobs.c.tin == TIN, jobs.c.idempotency_key == key)
            ).one()

    def states(self) -> dict[str, str]:
        with self.runtime.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.idempotency_key, jobs.c.state)).all()
        return {k: s for k, s in rows}

    def branch(self, bhf_id: str = "00") -> Any:
        with self.runtime.engine.connect() as conn:
            return q.get_branch(conn, TIN, bhf_id)


def make_settings(db_url: str, oscu_url: str, state_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        oscu_url=oscu_url,
        state_dir=state_dir,
        secret_key=SecretStr(Fernet.generate_key().decode()),
        oscu=OscuSettings(connect_timeout_s=1, read_timeout_s=1),
        retry=RetrySettings(base_s=0.01, cap_s=0.05, max_attempts=6, sequence_max_attempts=3),
        drain=DrainSettings(max_jobs=500, max_seconds=10, inline_wait_s=0.2, lease_ttl_s=5),
    )


def gavaconnect_client(sim_url: str) -> OscuSettings:
    """A client set up for the simulator's GavaConnect flavour: its paths and its token."""
    return OscuSettings(
        connect_timeout_s=1,
        read_timeout_s=1,
        flavour="gavaconnect",
        token_url=f"{sim_url}/v1/token/generate",
        consumer_key=SecretStr("sim-consumer"),
        consumer_secret=SecretStr("sim-secret"),
    )


@pytest.fixture
def pipeline_factory(db_url: str, tmp_path: Path) -> Iterator[Any]:
    started: list[tuple[Runtime, Any]] = []

    def start(branches: tuple[str, ...] = ("00",), **sim_options: Any) -> Pipeline:
        context = run_simulator(tmp_path / "ledger.jsonl", **sim_options)
        sim = context.__enter__()
        settings = make_settings(db_url, sim.url, tmp_path)
        if sim_options.get("flavour") == "gavaconnect":  # the relay talks to it as it must
            settings = settings.model_copy(update={"oscu": gavaconnect_client(sim.url)})
        runtime = build_runtime(settings, need_broker=False)
        started.append((runtime, context))
        for bhf in branches:
            init_device(
                runtime.engine,
                runtime.client,
                runtime.devices,
                tin=TIN,
                bhf_id=bhf,
                serial=f"SER-{bhf}",
            )
        return Pipeline(runtime, sim)

    yield start
    for runtime, context in started:
        runtime.close()
        context.__exit__(None, None, None)


@pytest.fixture
def pipeline(pipeline_factory: Any) -> Pipeline:
    return pipeline_factory()  # type: ignore[no-any-return]
