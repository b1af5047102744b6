"""Separate processes share one embedded redis-server, and Celery really works over it.

This is the situation the embedded broker exists for: ``etims-relay enqueue`` and
``etims-relay worker`` are different processes started in any order, with no service
installed. The Celery test proves the URL we hand out is one kombu's redis transport accepts
for a unix socket, end to end through a real worker subprocess on the threads pool.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from kombu import Connection

from worker.embedded_broker import (
    LOG_NAME,
    PID_NAME,
    embedded_redis_pid,
    ensure_embedded_redis,
    socket_path_for,
    stop_embedded_redis,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

ENSURE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from worker.embedded_broker import ensure_embedded_redis
    # Start together: every process waits for the same wall-clock instant.
    start_at = float(sys.argv[2])
    time.sleep(max(0.0, start_at - time.time()))
    print(ensure_embedded_redis(Path(sys.argv[1])))
    """
)

PROBE_APP = textwrap.dedent(
    """
    from __future__ import annotations

    import os
    from pathlib import Path

    from celery import Celery

    app = Celery("probe", broker=os.environ["PROBE_BROKER_URL"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )


    @app.task(name="probe.touch")
    def touch(path: str, text: str) -> None:
        Path(path).write_text(text)
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _servers_on(sock: Path) -> list[int]:
    """Pids of live redis-server processes serving ``sock`` (by their /proc title)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_bytes().rpartition(b")")[2].split()[0]
        except OSError:
            continue
        if state != b"Z" and b"redis-server" in cmdline and os.fsencode(sock) in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "state"
    yield directory
    stop_embedded_redis(directory)
    assert _servers_on(socket_path_for(directory)) == []


def test_concurrent_processes_end_up_with_one_server(state_dir: Path) -> None:
    start_at = time.time() + 1.0  # after the interpreters have imported everything
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ENSURE_SCRIPT, str(state_dir), repr(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
            text=True,
        )
        for _ in range(4)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        outputs.append(out.strip())

    assert len(set(outputs)) == 1
    sock = socket_path_for(state_dir)
    assert outputs[0] == f"redis+socket://{sock}"
    # Every starter has exited; the daemonized server lives on and is the only one.
    servers = _servers_on(sock)
    assert len(servers) == 1
    assert int((state_dir / PID_NAME).read_text()) == servers[0]
    # Exactly one start was attempted: the lock made the other three reuse the first.
    assert (state_dir / LOG_NAME).read_text().count("Redis is starting") == 1
    # A later process (this one) reuses it.
    ensure_embedded_redis(state_dir)
    assert embedded_redis_pid(state_dir) == servers[0]


@pytest.fixture
def worker_process(tmp_path: Path, state_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A real ``celery worker --pool threads -c 2`` on the embedded broker; torn down after."""
    url = ensure_embedded_redis(state_dir)
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "probe_app.py").write_text(PROBE_APP)
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(app_dir), env["PYTHONPATH"]])
    env["PROBE_BROKER_URL"] = url
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "probe_app",
            "worker",
            "--pool",
            "threads",
            "-c",
            "2",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ],
        cwd=app_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log.close()


def _wait_for(path: Path, proc: subprocess.Popen[str], log: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        assert proc.poll() is None, f"worker exited early:\n{log.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"task not consumed within {timeout_s} s:\n{log.read_text()}")


@pytest.mark.timeout(60)
def test_celery_round_trip_over_the_socket(
    tmp_path: Path, worker_process: tuple[str, subprocess.Popen[str]]
) -> None:
    url, proc = worker_process
    assert url.startswith("redis+socket:///")
    sender = Celery("sender", broker=url)
    sender.conf.update(task_serializer="json", accept_content=["json"])
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    log = tmp_path / "worker.log"
    try:
        # Sent by name, as producers do; possibly before the worker is even connected.
        sender.send_task("probe.touch", args=[str(first), "one"])
        assert _wait_for(first, proc, log, 15.0) == "one"
        sender.send_task("probe.touch", args=[str(second), "two"])
        assert _wait_for(second, proc, log, 5.0) == "two"
    finally:
        sender.close()
    assert "redis+socket://" in log.read_text()


def test_kombu_accepts_the_url_for_an_awkward_path(tmp_path: Path) -> None:
    """Spaces and percent signs in the state dir survive the URL (kombu unquotes the path)."""
    awkward = tmp_path / "my shop 100%"
    url = ensure_embedded_redis(awkward)
    try:
        assert "%20" in url
        assert "%25" in url
        with Connection(url) as conn:
            queue = conn.SimpleQueue("probe")
            try:
                queue.put({"branch": "P000000000A-00"})
                message = queue.get(timeout=5)
                assert message.payload == {"branch": "P000000000A-00"}
                message.ack()
            finally:
                queue.close()
    finally:
        stop_embedded_redis(awkward)
