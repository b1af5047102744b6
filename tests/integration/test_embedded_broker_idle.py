"""The embedded redis-server does not outlive its users: it stops by itself once no process
has used it for ETIMS_EMBEDDED_BROKER_IDLE_S, stays up while a worker is connected, and
``etims-relay broker stop`` stops it at once. Real processes throughout: the CLI, a worker,
the daemonized server and its watchdog."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import ETIMS_RELAY, wait_until
from worker.embedded_broker import (
    _alive,
    embedded_redis_pid,
    socket_path_for,
    watchdog_running,
)

IDLE_S = 3


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETIMS_")}
    env.update(
        ETIMS_DATABASE_URL=f"sqlite:///{tmp_path / 'outbox.db'}",
        ETIMS_BROKER_URL="",
        ETIMS_STATE_DIR=str(tmp_path / "state"),
        ETIMS_EMBEDDED_BROKER_IDLE_S=str(IDLE_S),
    )
    env.update(extra)
    return env


def _cli(tmp_path: Path, *args: str) -> str:
    done = subprocess.run(
        [ETIMS_RELAY, *args],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _gone(state: Path, pid: int) -> bool:
    """The server no longer runs (a zombie awaiting its reaper counts as gone)."""
    return not _alive(pid) and embedded_redis_pid(state) is None


def test_server_stops_after_its_last_user_is_gone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _cli(tmp_path, "db", "upgrade")
    # Given a worker using the embedded broker
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [ETIMS_RELAY, "worker", "-c", "1"],
            env=_env(tmp_path),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        pid = wait_until(lambda: embedded_redis_pid(state), timeout=90, what="embedded broker")
        wait_until(lambda: watchdog_running(state.resolve()), timeout=30, what="watchdog")
        # When the worker stays connected well past the idle time
        time.sleep(3 * IDLE_S)
        # Then the server is still up for it
        assert embedded_redis_pid(state) == pid, (tmp_path / "worker.log").read_text()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)

    # When the worker is gone, the server stops within the idle time (plus a poll)
    wait_until(lambda: _gone(state, pid), timeout=IDLE_S + 15, what="idle broker to stop")
    # ...and removes its socket; its watchdog exits with it
    assert not socket_path_for(state).exists()
    wait_until(lambda: not watchdog_running(state.resolve()), timeout=15, what="watchdog exit")


def test_broker_stop_stops_it_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env_idle = "600"
    done = subprocess.run(
        [ETIMS_RELAY, "broker", "start"],
        env=_env(tmp_path, ETIMS_EMBEDDED_BROKER_IDLE_S=env_idle),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pid = embedded_redis_pid(state)
    assert pid is not None and "running" in _cli(tmp_path, "broker", "status")

    assert "stopped" in _cli(tmp_path, "broker", "stop")

    wait_until(lambda: _gone(state, pid), timeout=10, what="server stopped")
    assert "not running" in _cli(tmp_path, "broker", "status")
    wait_until(lambda: not watchdog_running(state.resolve()), timeout=15, what="watchdog exit")


def test_without_idle_stop_there_is_no_watchdog(tmp_path: Path) -> None:
    from worker.embedded_broker import ensure_embedded_redis, stop_embedded_redis

    state = tmp_path / "state"
    try:
        ensure_embedded_redis(state, idle_s=0)
        assert embedded_redis_pid(state) is not None
        assert not watchdog_running(state.resolve())
    finally:
        stop_embedded_redis(state)
