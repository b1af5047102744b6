"""What sizes a worker for hundreds of threads: the database pool settings, the OSCU client's
connections, the open files limit, and what a task does when the pool stays busy (issue 16)."""

from __future__ import annotations

import logging
import resource
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from schemas.settings import DatabaseSettings, OscuSettings, Settings
from tests.helpers import RecordingWaker
from worker.devices import DeviceDirectory
from worker.oscu.client import OscuClient
from worker.outbox import migrate
from worker.outbox.db import APPLICATION_NAME_MAX, application_name, make_engine
from worker.runtime import Runtime, install_runtime, reset_runtime, secrets_fernet
from worker.tasks import drain_task, sweep_task
from worker.worker_services import raise_open_files_limit

PG = "postgresql://nobody@127.0.0.1:1/none"  # never connected: engines connect lazily


def test_database_pool_is_read_from_the_environment_beside_the_flat_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ETIMS_DATABASE_URL", "postgresql://db/outbox")
    monkeypatch.setenv("ETIMS_DATABASE__POOL_SIZE", "4")
    monkeypatch.setenv("ETIMS_DATABASE__MAX_OVERFLOW", "2")
    monkeypatch.setenv("ETIMS_DATABASE__POOL_TIMEOUT_S", "7.5")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "postgresql://db/outbox"
    assert (settings.database.pool_size, settings.database.max_overflow) == (4, 2)
    assert settings.database.pool_timeout_s == 7.5


def test_a_pool_of_no_connections_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETIMS_DATABASE__POOL_SIZE", "0")
    with pytest.raises(ValueError, match="pool_size"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_engine_pool_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETIMS_DATABASE__POOL_SIZE", "3")
    monkeypatch.setenv("ETIMS_DATABASE__MAX_OVERFLOW", "0")
    monkeypatch.setenv("ETIMS_DATABASE__POOL_TIMEOUT_S", "2")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    engine = make_engine(PG, pool=settings.database)
    # QueuePool.status(): "Pool size: 3  Connections in pool: 0 Current Overflow: -3 ..."
    assert engine.pool.size() == 3
    assert engine.pool.timeout() == 2
    assert "Current Overflow: -3" in engine.pool.status()
    default = make_engine(PG)
    assert (default.pool.size(), default.pool.timeout()) == (20, 30)


def test_application_name_says_which_process_holds_a_connection() -> None:
    name = application_name("worker")
    assert name.startswith("etims-relay-worker:")
    assert len(name.encode()) <= APPLICATION_NAME_MAX


# --------------------------------------------------------------------------- OSCU client


class _SlowCounting(BaseHTTPRequestHandler):
    """Holds every POST until ``target`` are in at once (or ``hold_s`` passed), counting the
    most it held at once: the answer does not depend on how fast the machine starts threads."""

    active = 0
    most = 0
    target = 0
    hold_s = 0.0
    changed = threading.Condition()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cls = type(self)
        with cls.changed:
            cls.active += 1
            cls.most = max(cls.most, cls.active)
            cls.changed.notify_all()
            deadline = time.monotonic() + cls.hold_s
            while cls.most < cls.target and time.monotonic() < deadline:
                cls.changed.wait(deadline - time.monotonic())
            cls.active -= 1
        body = b'{"resultCd":"000","resultMsg":"ok","data":null}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the listen backlog: a hundred connects arrive at once
    daemon_threads = True


@pytest.fixture
def slow_server() -> Iterator[str]:
    _SlowCounting.active = _SlowCounting.most = 0
    server = _Server(("127.0.0.1", 0), _SlowCounting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def most_calls_at_once(client: OscuClient, threads: int, hold_s: float) -> int:
    _SlowCounting.target, _SlowCounting.hold_s = threads, hold_s

    def one(_: int) -> None:
        outcome = client.call(
            "selectInitOsdcInfo", {"tin": "P051234567A", "bhfId": "00"}, device=None, write=False
        )
        assert outcome.ok, outcome

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(threads)))
    return _SlowCounting.most


def test_the_default_engine_carries_as_many_calls_at_once_as_there_are_threads(
    slow_server: str,
) -> None:
    # 96 threads: more than any fixed pool would hold; one connection per thread
    client = OscuClient.from_settings(slow_server, OscuSettings())
    try:
        assert most_calls_at_once(client, 96, hold_s=20) == 96
    finally:
        client.close()


def test_an_explicit_connection_limit_caps_calls_in_flight(slow_server: str) -> None:
    settings = OscuSettings(http_engine="httpx", max_connections=8)
    client = OscuClient.from_settings(slow_server, settings)
    try:
        assert most_calls_at_once(client, 32, hold_s=0.3) == 8
    finally:
        client.close()


# --------------------------------------------------------------------------- open files


def test_worker_start_raises_the_open_files_soft_limit_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = 256 if hard == resource.RLIM_INFINITY else min(256, hard - 1)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        raised = raise_open_files_limit()
        now_soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert now_soft == raised
        assert raised == (lowered if hard == resource.RLIM_INFINITY else hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --------------------------------------------------------------------------- pool exhausted


@pytest.fixture
def exhausted_runtime(tmp_path: Path) -> Iterator[tuple[Runtime, RecordingWaker]]:
    """A worker runtime whose one pooled connection another thread holds."""
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    migrate.upgrade(url)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        database=DatabaseSettings(pool_size=1, max_overflow=0, pool_timeout_s=0.2),
    )
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    waker = RecordingWaker()
    rt = Runtime(settings, engine, "", DeviceDirectory(engine, secrets_fernet(settings)), waker)
    held = engine.connect()
    install_runtime(rt)
    try:
        yield rt, waker
    finally:
        reset_runtime()
        held.close()
        engine.dispose()


def test_a_drain_that_finds_the_pool_busy_hands_its_branch_back_with_one_warning(
    exhausted_runtime: tuple[Runtime, RecordingWaker], caplog: pytest.LogCaptureFixture
) -> None:
    _, waker = exhausted_runtime
    with caplog.at_level(logging.WARNING):
        result = drain_task.run(7)
    assert result["status"] == "pool_timeout"
    # the branch is woken again shortly (jittered), not left to the lease or lost
    ((branches, countdown),) = waker.wakes
    assert branches == [7] and countdown is not None and 1.0 <= countdown <= 5.0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(";")[0] for r in warnings] == [
        "branch 7: no database connection within 0.2 s (pool of 1+0 busy)"
    ]
    assert all(r.exc_info is None for r in warnings), "a traceback in the log"


def test_a_sweep_that_finds_the_pool_busy_skips_this_beat_without_a_traceback(
    exhausted_runtime: tuple[Runtime, RecordingWaker], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert sweep_task.run() == 0
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "skipped until the next beat" in warning.getMessage()
    assert warning.exc_info is None
