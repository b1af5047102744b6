"""The embedded broker's watchdog: stops the redis-server once nothing has used it for a while.

``python -m worker.broker_watchdog STATE_DIR IDLE_S`` is started by
:func:`worker.embedded_broker.ensure_embedded_redis`. It detaches at once (double fork, new
session), so the command that started it does not wait and it survives that command. One
watchdog per server: it holds ``etims-redis.watch.lock`` for its life and exits when another
holds it. It polls every ``min(IDLE_S / 4, 5)`` seconds; when no client is connected and the
server's recent-use key has expired, it stops the server (under the start lock) and exits. It
also exits when the server is gone for another reason (``etims-relay broker stop``, a crash).
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

import redis

from worker.embedded_broker import (
    WATCH_LOCK_NAME,
    EmbeddedBrokerError,
    in_use,
    socket_path_for,
    stop_if_idle,
)

#: Longest time between two looks at the server.
MAX_POLL_S = 5.0
#: How long a starting watchdog retries the watch lock before leaving it to its holder.
LOCK_PATIENCE_S = 1.0


def watch(directory: Path, idle_s: float) -> None:
    """Poll until the server is idle (then stop it) or gone."""
    sock = socket_path_for(directory)
    poll_s = max(0.05, min(idle_s / 4, MAX_POLL_S))
    while True:
        time.sleep(poll_s)
        try:
            if in_use(sock, idle_s):
                continue
            if stop_if_idle(directory, idle_s):
                return
        except (redis.RedisError, OSError):
            return  # the server is gone: nothing left to watch
        except EmbeddedBrokerError:
            continue  # the start lock is held long (a slow start): look again later


def _lock(fd: int) -> bool:
    """Take the watch lock; a moment's contention is a probe (``watchdog_running``), a lock
    held longer is another watchdog."""
    deadline = time.monotonic() + LOCK_PATIENCE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def _detach() -> None:
    """Become a daemon: the launcher's ``subprocess.run`` returns once the first fork exits."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    os.chdir("/")  # hold no directory of the caller's
    if os.fork() > 0:
        os._exit(0)


def main(argv: list[str]) -> int:
    directory, idle_s = Path(argv[0]), float(argv[1])
    # Lock before detaching: the daemon inherits the locked file description, so when the
    # launcher returns, the watchdog already holds the lock (no window without a watchdog).
    fd = os.open(directory / WATCH_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if not _lock(fd):
        return 0  # another watchdog already watches this server
    _detach()
    watch(directory, idle_s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
