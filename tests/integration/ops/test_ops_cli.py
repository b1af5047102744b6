"""The CLI as operators run it: ``python -m etims_relay``, ``db current``, and ETIMS_LOG_LEVEL
honoured by every command (real subprocesses, real databases)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.helpers import ETIMS_RELAY, wait_until
from tests.integration.ops.conftest import free_port
from worker.outbox import migrate


def run(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETIMS_")}
    clean.update(env)
    return subprocess.run(
        argv, env=clean, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    done = run([sys.executable, "-m", "etims_relay", "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage: etims-relay" in done.stdout
    for command in ("worker", "intake", "db", "broker"):
        assert command in done.stdout
    db = run(
        [sys.executable, "-m", "etims_relay", "db", "current", "--json"],
        tmp_path,
        ETIMS_DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}",
    )
    assert db.returncode == 0, db.stderr
    assert json.loads(db.stdout)["current"] == []


def test_db_current_shows_the_schema_revision(db_url: str, tmp_path: Path) -> None:
    head = list(migrate.head_revisions(db_url))
    env = {"ETIMS_DATABASE_URL": db_url, "ETIMS_SECRET_KEY": Fernet.generate_key().decode()}

    # Given a database at head: current == head, and --check passes
    at_head = run([ETIMS_RELAY, "db", "current", "--json", "--check"], tmp_path, **env)
    assert at_head.returncode == 0, at_head.stderr
    assert json.loads(at_head.stdout) == {"current": head, "head": head, "up_to_date": True}
    text = run([ETIMS_RELAY, "db", "current"], tmp_path, **env)
    assert f"database at revision {head[0]}" in text.stdout and "up to date" in text.stdout

    # When it is one revision behind
    down = run([ETIMS_RELAY, "db", "downgrade", "--", "-1"], tmp_path, **env)
    assert down.returncode == 0, down.stderr

    # Then current shows the older revision, says what to do, and --check fails
    behind = run([ETIMS_RELAY, "db", "current", "--json", "--check"], tmp_path, **env)
    assert behind.returncode == 1
    report = json.loads(behind.stdout)
    assert report["current"] != head and report["current"] and report["up_to_date"] is False
    assert "etims-relay db upgrade" in run([ETIMS_RELAY, "db", "current"], tmp_path, **env).stdout


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_level_is_honoured_by_a_command(tmp_path: Path, fmt: str) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    # alembic logs each migration at INFO
    quiet = run(
        [ETIMS_RELAY, "db", "upgrade"],
        tmp_path,
        ETIMS_DATABASE_URL=url,
        ETIMS_LOG_LEVEL="WARNING",
        ETIMS_LOG_FORMAT=fmt,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "Running upgrade" not in quiet.stderr
    run([ETIMS_RELAY, "db", "downgrade", "base"], tmp_path, ETIMS_DATABASE_URL=url)
    verbose = run(
        [ETIMS_RELAY, "db", "upgrade"],
        tmp_path,
        ETIMS_DATABASE_URL=url,
        ETIMS_LOG_LEVEL="info",
        ETIMS_LOG_FORMAT=fmt,
    )
    assert verbose.returncode == 0, verbose.stderr
    assert "Running upgrade" in verbose.stderr
    # Unset, a one-shot command logs warnings only (its output is the answer)
    run([ETIMS_RELAY, "db", "downgrade", "base"], tmp_path, ETIMS_DATABASE_URL=url)
    default = run([ETIMS_RELAY, "db", "upgrade"], tmp_path, ETIMS_DATABASE_URL=url)
    assert default.returncode == 0 and "Running upgrade" not in default.stderr
    if fmt == "json":
        records = [json.loads(line) for line in verbose.stderr.splitlines() if line.strip()]
        assert {r["level"] for r in records} == {"INFO"}


def test_worker_honours_log_level(tmp_path: Path, redis_url: str) -> None:
    env = {
        "ETIMS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "ETIMS_BROKER_URL": redis_url,
        "ETIMS_LOG_FORMAT": "json",
    }
    migrate.upgrade(env["ETIMS_DATABASE_URL"])

    def metrics_line_logged(level: str | None) -> bool:
        port = free_port()
        log = tmp_path / f"worker-{level}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [ETIMS_RELAY, "worker", "-c", "1", "--metrics-port", str(port)],
                env={
                    **{k: v for k, v in os.environ.items() if not k.startswith("ETIMS_")},
                    **env,
                    **({"ETIMS_LOG_LEVEL": level} if level else {}),
                },
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=out,
                start_new_session=True,
            )
        try:
            # Celery logs "ready" at INFO too; wait for the worker's consumer to connect.
            wait_until(lambda: _listening(port), timeout=90, what="worker metrics port")
            wait_until(
                lambda: _has_consumer(redis_url) or proc.poll() is not None,
                timeout=60,
                what="worker consumer",
            )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        records = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
        assert all(r["level"] != "DEBUG" for r in records)
        return any(r.get("event") == "metrics_listening" for r in records)

    assert metrics_line_logged(None), "a worker logs INFO by default"
    assert not metrics_line_logged("WARNING")


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _has_consumer(redis_url: str) -> bool:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return len(client.client_list()) > 1
    finally:
        client.close()
