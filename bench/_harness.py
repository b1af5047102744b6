"""Shared plumbing of the pipeline benchmarks: services, worker processes, workloads, figures.

Every benchmark builds one :class:`Stack` per measured cell: a fresh PostgreSQL database
(``bench_*``, migrated, dropped afterwards), a flushed logical Redis database (>= 10), the OSCU
simulator as a child process, and real ``etims-relay worker`` processes (threads pool), each
in its own process group so that it can be SIGKILLed with its children like a lost host.
Jobs go in through ``producers.enqueue`` in this process (the same call the CLI and the intake
make); results are read back from the outbox (``jobs.accepted_at``), never from the workers.

Figures are ratios to a baseline measured in the same run (machines here are shared and noisy).
:func:`load_note` records what else was running, to print next to the figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import text  # noqa: E402

from producers.enqueue import enqueue  # noqa: E402
from simulator.process import SimulatorProcess  # noqa: E402
from simulator.verify import verify_ledger  # noqa: E402
from tests.helpers import ETIMS_RELAY, FAST_ENV, RelayEnv  # noqa: E402
from tests.workload import TIN, branch_workload  # noqa: E402
from worker.device_init import init_device  # noqa: E402
from worker.outbox import migrate  # noqa: E402
from worker.outbox.db import make_engine  # noqa: E402
from worker.runtime import build_runtime  # noqa: E402
from worker.wake import CeleryWaker, NullWaker, Waker  # noqa: E402

PG_ADMIN_DSN = os.environ.get("ETIMS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_HOST = os.environ.get("ETIMS_BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("ETIMS_BENCH_REDIS_PORT", "6379"))
#: Logical Redis database of the benchmarks (the test suite uses lower numbers).
REDIS_DB = int(os.environ.get("ETIMS_BENCH_REDIS_DB", "11"))

#: Worker settings of the benchmarks: the test suite's short timeouts (so a killed host's
#: leases expire in seconds, not minutes), but production-size drain batches.
BENCH_ENV = {
    **FAST_ENV,
    "ETIMS_DRAIN__MAX_SECONDS": "20",
    "ETIMS_DRAIN__MAX_JOBS": "200",
    "ETIMS_SWEEP_INTERVAL_S": "1",
}


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # run the Stack's __exit__: stop workers, drop the database


signal.signal(signal.SIGTERM, _terminate)

ACTIVE_STATES = ("pending", "in_flight", "retry_wait", "unknown")
TERMINAL_STATES = ("accepted", "dead", "blocked", "skipped", "superseded")


def pg_url(dbname: str) -> str:
    return f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{dbname}"


def _admin() -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN_DSN, autocommit=True)


def create_database(prefix: str = "bench") -> str:
    """A fresh migrated PostgreSQL database; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    assert name.startswith("bench_")
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_url(name)
    migrate.upgrade(url)
    return url


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    assert name.startswith("bench_")
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_database(workdir: Path) -> str:
    url = f"sqlite:///{workdir / 'outbox.db'}"
    migrate.upgrade(url)
    return url


# --------------------------------------------------------------------------- machine load


def load_note() -> str:
    """Load average and the busiest other processes: the noise next to a figure."""
    one, five, _ = os.getloadavg()
    mine = {os.getpid()}
    busy = []
    try:
        import psutil

        procs = list(psutil.process_iter(["pid", "name", "cmdline"]))
        for p in procs:
            try:
                p.cpu_percent(None)
            except psutil.Error:
                pass
        time.sleep(0.5)
        for p in procs:
            try:
                cpu = p.cpu_percent(None)
            except psutil.Error:
                continue
            if cpu >= 10 and p.pid not in mine:
                cmd = " ".join(p.info["cmdline"] or [p.info["name"] or "?"])[:60]
                busy.append(f"{cpu:.0f}% {cmd}")
    except ImportError:  # pragma: no cover
        pass
    note = f"loadavg {one:.2f}/{five:.2f} on {os.cpu_count()} cores"
    if busy:
        note += "; busy: " + "; ".join(busy[:4])
    return note


# --------------------------------------------------------------------------- workers


class Workers:
    """``etims-relay worker`` processes with distinct Celery hostnames ("hosts")."""

    def __init__(self, relay: RelayEnv, *, loglevel: str = "INFO") -> None:
        self.relay = relay
        self.loglevel = loglevel
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def start(
        self,
        n: int = 1,
        *,
        concurrency: int = 8,
        beat: bool = True,
        prefix: str = "w",
        env: Mapping[str, str] | None = None,
    ) -> list[str]:
        names = []
        for _ in range(n):
            name = f"{prefix}{len(self.procs) + 1}"
            with_beat = beat and not any(p.poll() is None for p in self.procs.values())
            log_path = self.relay.workdir / f"worker-{name}.log"
            args = [
                ETIMS_RELAY,
                "worker",
                f"--concurrency={concurrency}",
                f"--loglevel={self.loglevel}",
                f"--hostname={name}",
            ]
            if with_beat:
                args.append("--beat")
            with open(log_path, "ab") as log:
                self.procs[name] = subprocess.Popen(
                    args,
                    env=self.relay.env(**(env or {})),
                    cwd=self.relay.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: killpg = a lost host
                )
            self.logs[name] = log_path
            names.append(name)
        return names

    def wait_ready(self, names: Iterable[str] | None = None, timeout: float = 60) -> None:
        """Until each worker's log says Celery is ``ready.``"""
        pending = set(names or self.procs)
        deadline = time.time() + timeout
        while pending and time.time() < deadline:
            for name in list(pending):
                if self.procs[name].poll() is not None:
                    tail = self.logs[name].read_text()[-3000:]
                    raise RuntimeError(f"worker {name} exited:\n{tail}")
                if b" ready." in self.logs[name].read_bytes():
                    pending.discard(name)
            time.sleep(0.1)
        if pending:
            raise RuntimeError(f"workers not ready after {timeout}s: {sorted(pending)}")

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def kill(self, name: str) -> None:
        """SIGKILL the worker's whole process group: no graceful shutdown, no acks."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 15
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                self.kill(name)


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """PG database + Redis db + simulator + workers for one measured cell."""

    latency_ms: float = 50.0
    database: str = "postgresql"  # or "sqlite"
    redis_db: int = REDIS_DB
    env: dict[str, str] = field(default_factory=dict)
    loglevel: str = "INFO"
    simulator_args: dict[str, Any] = field(default_factory=dict)
    keep: bool = False

    def __enter__(self) -> Stack:
        self.workdir = Path(tempfile.mkdtemp(prefix="etims-bench-"))
        (self.workdir / "state").mkdir()
        self.database_url = (
            create_database() if self.database == "postgresql" else sqlite_database(self.workdir)
        )
        self.redis = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.redis_db)
        self.redis.flushdb()
        self.broker_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}"
        self.simulator = SimulatorProcess(
            self.workdir / "ledger.jsonl",
            latency_ms=self.latency_ms,
            log_path=self.workdir / "simulator.log",
            **self.simulator_args,
        ).start()
        self.relay = RelayEnv.make(
            self.workdir,
            self.database_url,
            self.broker_url,
            self.simulator.url,
            Fernet.generate_key().decode(),
        )
        self.relay.extra.update(BENCH_ENV)
        self.relay.extra.update(self.env)
        self.engine = make_engine(self.database_url)
        self.workers = Workers(self.relay, loglevel=self.loglevel)
        self._waker: CeleryWaker | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.workers.stop_all()
        finally:
            self.simulator.stop()
            self.engine.dispose()
            if self.database == "postgresql" and not self.keep:
                drop_database(self.database_url)
            self.redis.flushdb()
            self.redis.close()
            if not self.keep:  # worker logs, ledger, embedded state: tens of MB per cell
                shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def waker(self) -> Waker:
        if self._waker is None:
            self._waker = CeleryWaker.for_broker(self.broker_url)
        return self._waker

    def init_devices(self, keys: Sequence[tuple[str, str]] | int, threads: int = 16) -> None:
        """Register a device for each (tin, bhf_id) (or the first ``keys`` branches)."""
        from concurrent.futures import ThreadPoolExecutor

        pairs = branch_keys(keys) if isinstance(keys, int) else list(keys)
        runtime = build_runtime(self.relay.settings(), need_broker=False)

        def one(pair: tuple[str, str]) -> None:
            init_device(
                runtime.engine,
                runtime.client,
                runtime.devices,
                tin=pair[0],
                bhf_id=pair[1],
                serial=f"SER-{pair[0]}-{pair[1]}",
            )

        try:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, pairs))
        finally:
            runtime.close()

    # -- reading the outbox -------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT state, count(*) FROM jobs GROUP BY state")).all()
        return {str(s): int(n) for s, n in rows}

    def active(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM jobs WHERE state IN "
                        "('pending','in_flight','retry_wait','unknown')"
                    )
                ).scalar_one()
            )

    def accepted_times(self) -> list[float]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT accepted_at FROM jobs WHERE state = 'accepted' ORDER BY accepted_at")
            ).all()
        return [float(r[0]) for r in rows]

    def wait_terminal(self, expected: int, timeout: float, interval: float = 1.0) -> float:
        """Poll until no job is active and ``expected`` jobs exist; return the time seen."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.active() == 0 and sum(self.counts().values()) >= expected:
                return time.time()
            time.sleep(interval)
        raise TimeoutError(f"not terminal after {timeout}s: {self.counts()}")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each part: workers (with children), simulator, the
        PostgreSQL backends serving this database, and this process (enqueue, polling)."""
        import psutil

        def tree(pid: int) -> float:
            try:
                proc = psutil.Process(pid)
                procs = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                return 0.0
            total = 0.0
            for p in procs:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            return total

        name = self.database_url.rsplit("/", 1)[1] if self.database == "postgresql" else None
        pg = 0.0
        if name:
            with _admin() as conn:
                pids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
                    )
                ]
            pg = sum(tree(p) for p in pids)
        me = psutil.Process().cpu_times()
        return {
            "workers": sum(tree(p) for p in self.workers.pids().values()),
            "simulator": tree(self.simulator.pid) if self.simulator.pid else 0.0,
            "postgres": pg,
            "bench": me.user + me.system,
        }

    def verify(self) -> Any:
        return verify_ledger(self.simulator.ledger)


# --------------------------------------------------------------------------- workloads


def branch_keys(count: int) -> list[tuple[str, str]]:
    """(tin, bhf_id) of ``count`` branches: ``tests.workload``'s TIN with bhf 00..99, then
    further taxpayers (bhf_id has two digits, so 100 branches per tin)."""
    keys = []
    for i in range(count):
        tin = TIN if i < 100 else f"P{51234567 + i // 100:09d}C"
        keys.append((tin, f"{i % 100:02d}"))
    return keys


def interleaved_batches(
    branches: int, jobs_per_branch: int, batch: int = 100
) -> list[list[dict[str, Any]]]:
    """Each branch's workload cut into batches of ``batch``, branches taking turns, so that
    every branch gets work early (one batch = one branch = one wake message)."""
    per_branch = [
        branch_workload(bhf, jobs_per_branch, tin=tin) for tin, bhf in branch_keys(branches)
    ]
    chunks = [[recs[i : i + batch] for i in range(0, len(recs), batch)] for recs in per_branch]
    out: list[list[dict[str, Any]]] = []
    for round_ in range(max(len(c) for c in chunks)):
        out += [c[round_] for c in chunks if round_ < len(c)]
    return out


def enqueue_all(
    engine: Any, batches: Sequence[Sequence[Mapping[str, Any]]], waker: Waker | None = None
) -> tuple[int, float]:
    """Enqueue every batch with ``producers.enqueue``; returns (jobs, seconds)."""
    started = time.perf_counter()
    total = 0
    for records in batches:
        total += len(enqueue(engine, records, waker=waker or NullWaker()))
    return total, time.perf_counter() - started


class EnqueueThread(threading.Thread):
    """Enqueue in the background while the workers drain (what producers do)."""

    def __init__(self, engine: Any, batches: Sequence[Sequence[Mapping[str, Any]]], waker: Waker):
        super().__init__(daemon=True)
        self.engine, self.batches, self.waker = engine, batches, waker
        self.jobs, self.seconds, self.error = 0, 0.0, None

    def run(self) -> None:
        try:
            self.jobs, self.seconds = enqueue_all(self.engine, self.batches, self.waker)
        except BaseException as exc:
            self.error = exc


# --------------------------------------------------------------------------- figures

#: A log line that counts as an error (the worker logs text lines with the level name).
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


def error_lines(logs: Mapping[str, Path]) -> tuple[int, list[str]]:
    """Error lines in the workers' logs: how many, and the first distinct ones."""
    count, first = 0, []
    for path in logs.values():
        for line in path.read_text(errors="replace").splitlines():
            if ERROR_LINE.search(line):
                count += 1
                short = line.strip()[:240]
                if len(first) < 5 and short not in first:
                    first.append(short)
    return count, first


def steady_rate(times: Sequence[float], lo: float = 0.1, hi: float = 0.9) -> float:
    """Jobs/s between the ``lo`` and ``hi`` quantiles of acceptance times (no warm-up, no tail)."""
    n = len(times)
    if n < 10:
        return float("nan")
    a, b = int(n * lo), int(n * hi) - 1
    span = times[b] - times[a]
    return (b - a) / span if span > 0 else float("nan")


def windows(times: Sequence[float], start: float, width: float) -> list[tuple[float, int]]:
    """(window start relative to ``start``, jobs accepted in it)."""
    if not times:
        return []
    counts: dict[int, int] = {}
    for t in times:
        k = int((t - start) // width)
        counts[k] = counts.get(k, 0) + 1
    return [(k * width, counts.get(k, 0)) for k in range(min(counts), max(counts) + 1)]


def summary(values: Sequence[float]) -> str:
    """median [min - max] (n)"""
    vals = [v for v in values if v == v]
    if not vals:
        return "n/a"
    return f"{statistics.median(vals):.3g} [{min(vals):.3g}-{max(vals):.3g}] (n={len(vals)})"


def median(values: Sequence[float]) -> float:
    vals = [v for v in values if v == v]
    return statistics.median(vals) if vals else float("nan")


def dump_json(path: Path | None, data: Any) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2, default=str))


def chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
