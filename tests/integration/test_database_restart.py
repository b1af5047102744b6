"""Invariant 1 when the database itself goes away: PostgreSQL restarts mid-run.

Workers' transactions fail while it is down; a drain that fails hands its lease back (or it
expires), the pool drops its dead connections, and the sweeper wakes the branches again. The
outcome a user sees: every job accepted once, in order, as if nothing had happened.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from simulator.verify import verify_ledger
from tests.helpers import RelayEnv, WorkerPool, all_terminal, wait_until
from tests.integration.test_pipeline_workers import acceptance_matches_enqueue_order, init_devices
from tests.workload import branch_ids, workload

pytestmark = pytest.mark.slow


def restart_postgresql() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        timeout=120,
    )


def status_or_none(relay: RelayEnv) -> dict | None:
    try:
        return relay.status()
    except AssertionError:  # the CLI could not reach the database (yet)
        return None


def test_postgresql_restart_mid_run_loses_nothing(
    relay_env: RelayEnv, workers: WorkerPool, simulator
) -> None:
    init_devices(relay_env, branch_ids(4))
    records = workload(4, 300)
    workers.start(2, concurrency=4)
    relay_env.enqueue(records)

    wait_until(
        lambda: (s := status_or_none(relay_env)) and s["jobs"]["accepted"] > 100,
        timeout=60,
        what="jobs flowing",
    )
    restart_postgresql()

    status = wait_until(
        lambda: (s := status_or_none(relay_env)) and all_terminal(s) and s,
        timeout=300,
        what="all jobs terminal after a PostgreSQL restart",
    )
    assert status["jobs"]["accepted"] + status["jobs"]["superseded"] == len(records), status
    report = verify_ledger(simulator.ledger)
    assert report.ok, report.violations
    acceptance_matches_enqueue_order(relay_env, simulator.ledger)
    # ... and the restart really hit the workers mid-run
    assert "terminating connection" in workers.logs() or "OperationalError" in workers.logs()
