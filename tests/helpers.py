"""Test helpers: run the real CLI and real worker processes against real services."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.settings import Settings

ETIMS_RELAY = str(Path(sys.executable).with_name("etims-relay"))

#: Timeouts short enough for tests, and consistent with the lease rule in Settings.
FAST_ENV = {
    "ETIMS_OSCU__CONNECT_TIMEOUT_S": "1",
    "ETIMS_OSCU__READ_TIMEOUT_S": "2",
    "ETIMS_DRAIN__LEASE_TTL_S": "8",
    "ETIMS_DRAIN__MAX_SECONDS": "5",
    "ETIMS_DRAIN__INLINE_WAIT_S": "0.5",
    "ETIMS_RETRY__BASE_S": "0.05",
    "ETIMS_RETRY__CAP_S": "1",
    "ETIMS_SWEEP_INTERVAL_S": "0.5",
}


@dataclass
class RelayEnv:
    """Environment shared by every etims-relay process of one test."""

    workdir: Path
    database_url: str
    broker_url: str
    oscu_url: str
    secret_key: str
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(
        cls, workdir: Path, database_url: str, broker_url: str, oscu_url: str, secret_key: str
    ) -> RelayEnv:
        return cls(workdir, database_url, broker_url, oscu_url, secret_key)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETIMS_")}
        env.update(FAST_ENV)
        env.update(
            ETIMS_DATABASE_URL=self.database_url,
            ETIMS_BROKER_URL=self.broker_url,
            ETIMS_OSCU_URL=self.oscu_url,
            ETIMS_SECRET_KEY=self.secret_key,
            ETIMS_STATE_DIR=str(self.workdir / "state"),
        )
        env.update(self.extra)
        env.update(overrides)
        return env

    def settings(self) -> Settings:
        """The same configuration, for in-process calls from the test."""
        env = self.env()
        saved = {k: os.environ.get(k) for k in env if k.startswith("ETIMS_")}
        os.environ.update({k: v for k, v in env.items() if k.startswith("ETIMS_")})
        try:
            return Settings(_env_file=None)  # type: ignore[call-arg]
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def cli(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [ETIMS_RELAY, *args],
            env=self.env(),
            cwd=self.workdir,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"etims-relay {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def enqueue(self, records: Iterable[Mapping[str, Any]]) -> subprocess.CompletedProcess[str]:
        text = "\n".join(json.dumps(r, default=str) for r in records) + "\n"
        return self.cli("enqueue", "-", input=text)

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", "--json").stdout))


class WorkerPool:
    """Real ``etims-relay worker`` processes; killable, restartable."""

    def __init__(self, relay: RelayEnv) -> None:
        self.relay = relay
        self.procs: list[subprocess.Popen[bytes]] = []
        self._count = 0

    def start(self, n: int = 1, *, concurrency: int = 4, beat_on_first: bool = True) -> None:
        for _ in range(n):
            beat = beat_on_first and not any(p.poll() is None for p in self.procs)
            self._count += 1
            log = open(self.relay.workdir / f"worker-{self._count}.log", "wb")
            args = [ETIMS_RELAY, "worker", f"--concurrency={concurrency}", "--loglevel=INFO"]
            if beat:
                args.append("--beat")
            self.procs.append(
                subprocess.Popen(
                    args,
                    env=self.relay.env(),
                    cwd=self.relay.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a worker and its whole process group (no graceful shutdown)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.alive():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.time() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                self.kill(proc)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.relay.workdir.glob("worker-*.log"))
        )


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.25, what: str = ""
) -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.time() + timeout
    last: Any = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: {last!r}")


def all_terminal(status: Mapping[str, Any]) -> bool:
    jobs = status["jobs"]
    # (a merged stock-out waits on its carrier's send: done only once that ends)
    active = ("pending", "in_flight", "retry_wait", "unknown", "merged")
    return sum(jobs.get(s, 0) for s in active) == 0


def ledger_writes(path: Path, endpoints: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Accepted writes recorded by the simulator, in arrival order."""
    records = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") != "write":
            continue
        if endpoints is None or record["endpoint"] in endpoints:
            records.append(record)
    return records


class RecordingWaker:
    """A waker that keeps each wake it was asked for: (sorted branch ids, countdown)."""

    def __init__(self) -> None:
        self.wakes: list[tuple[list[int], float | None]] = []

    def wake(self, branch_ids: Iterable[int], countdown_s: float | None = None) -> None:
        self.wakes.append((sorted(branch_ids), countdown_s))
