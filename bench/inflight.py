"""Branches in flight per worker process at real KRA latency (issue 16).

One cell: the OSCU simulator at ``--latency`` ms (default 1,000), ``--branches`` branches
(default 256), ``--workers`` ``etims-relay worker`` processes (default 1) with
``--concurrency`` threads each (default 256), PostgreSQL + Redis, a fresh database and Redis
db. Devices are registered, every branch's jobs are enqueued with no worker running (the
beat sweeper wakes the branches, as after a restart), then the workers start.

At a round trip of L seconds a branch sends at most 1/L jobs/s, so the ideal rate is
``min(branches, workers x concurrency) / L``. Reported:

* the steady acceptance rate (10th..90th percentile of ``jobs.accepted_at``) and its ratio to
  the ideal;
* the peak number of PostgreSQL connections the workers hold, polled from
  ``pg_stat_activity`` every ``--poll`` s (connections whose ``application_name`` starts with
  ``etims-relay-worker``: the engine names each process), total and per process;
* error lines in the workers' logs (``ERROR``, ``CRITICAL``, ``Traceback``), with the first
  distinct ones;
* the workers' peak RSS, open file descriptors and threads;
* CPU milliseconds per accepted job of the workers, the simulator and PostgreSQL.

A cell holds ``ideal x --seconds`` jobs, so it runs about ``--seconds`` at the ideal rate; it
stops at ``--timeout`` whatever is left (the rate is then over what was accepted).

    python bench/inflight.py                                  # 256 branches, 1 x 256 threads
    python bench/inflight.py --branches 512 --workers 2       # 512 branches over 2 processes
    python bench/inflight.py --pool-size 2                    # a small pool
    python bench/inflight.py --pool-size 10 --max-overflow 10 # the pool before 2026-12-05
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
import psycopg
import redis
from _harness import (
    PG_ADMIN_DSN,
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    Stack,
    dump_json,
    enqueue_all,
    error_lines,
    interleaved_batches,
    load_note,
    steady_rate,
)

from schemas.settings import DatabaseSettings

WORKER_APP = "etims-relay-worker"


class Sampler(threading.Thread):
    """Polls pg_stat_activity and the worker processes; keeps the peaks."""

    def __init__(self, dbname: str, pids: dict[str, int], interval: float) -> None:
        super().__init__(daemon=True)
        self.dbname, self.pids, self.interval = dbname, pids, interval
        self.stop_event = threading.Event()
        self.peak_connections = 0
        self.peak_per_process: dict[str, int] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self.peak_fds: dict[str, int] = {}
        self.peak_threads: dict[str, int] = {}
        #: clients of the bench's Redis db (the workers' broker connections, and this one)
        self.peak_redis_clients = 0
        self.samples = 0

    def run(self) -> None:
        procs = {name: psutil.Process(pid) for name, pid in self.pids.items()}
        broker = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            while not self.stop_event.wait(self.interval):
                clients = [c for c in broker.client_list() if int(c.get("db", -1)) == REDIS_DB]
                self.peak_redis_clients = max(self.peak_redis_clients, len(clients))
                rows = conn.execute(
                    "SELECT application_name, count(*) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name LIKE %s GROUP BY 1",
                    (self.dbname, WORKER_APP + "%"),
                ).fetchall()
                self.samples += 1
                self.peak_connections = max(self.peak_connections, sum(n for _, n in rows))
                for app, n in rows:
                    self.peak_per_process[app] = max(self.peak_per_process.get(app, 0), n)
                for name, proc in procs.items():
                    try:
                        rss = proc.memory_info().rss / 2**20
                        fds, threads = proc.num_fds(), proc.num_threads()
                    except psutil.Error:
                        continue
                    self.peak_rss_mb[name] = max(self.peak_rss_mb.get(name, 0.0), rss)
                    self.peak_fds[name] = max(self.peak_fds.get(name, 0), fds)
                    self.peak_threads[name] = max(self.peak_threads.get(name, 0), threads)


def cell(args: argparse.Namespace) -> dict[str, Any]:
    latency_s = args.latency / 1000
    slots = args.workers * args.concurrency
    ideal = min(args.branches, slots) / latency_s
    jobs_per_branch = max(6, int(ideal * args.seconds / args.branches))
    env = {
        # One round trip is a second: read timeout and lease sized for it, as in production.
        "ETIMS_OSCU__CONNECT_TIMEOUT_S": "5",
        "ETIMS_OSCU__READ_TIMEOUT_S": "10",
        "ETIMS_DRAIN__LEASE_TTL_S": "60",
        "ETIMS_DATABASE__POOL_SIZE": str(args.pool_size),
        "ETIMS_DATABASE__MAX_OVERFLOW": str(args.max_overflow),
        "ETIMS_DATABASE__POOL_TIMEOUT_S": str(args.pool_timeout),
    }
    with Stack(latency_ms=args.latency, loglevel=args.loglevel, env=env, keep=args.keep) as stack:
        if args.keep:
            print(
                f"  kept: {stack.workdir} (worker log), database {stack.database_url}", flush=True
            )
        t0 = time.time()
        stack.init_devices(args.branches, threads=min(128, args.branches))
        init_s = time.time() - t0
        batches = interleaved_batches(args.branches, jobs_per_branch, 100)
        jobs, enqueue_s = enqueue_all(stack.engine, batches)
        load = load_note()
        started = time.time()
        names = stack.workers.start(args.workers, concurrency=args.concurrency)
        stack.workers.wait_ready(names)
        dbname = stack.database_url.rsplit("/", 1)[1]
        sampler = Sampler(dbname, stack.workers.pids(), args.poll)
        sampler.start()
        cpu_before = stack.cpu_seconds()
        sessions_before = sessions_opened(dbname)
        deadline = started + args.timeout
        while time.time() < deadline:
            if stack.active() == 0:
                break
            time.sleep(1.0)
        sampler.stop_event.set()
        sampler.join()
        cpu_used = {k: v - cpu_before[k] for k, v in stack.cpu_seconds().items()}
        sessions = sessions_opened(dbname) - sessions_before
        times = stack.accepted_times()
        counts = stack.counts()
        stack.workers.stop_all()
        errors, first_errors = error_lines(stack.workers.logs)
        verified = stack.verify().ok
    rate = steady_rate(times)
    return {
        "branches": args.branches,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "latency_ms": args.latency,
        "pool": f"{args.pool_size}+{args.max_overflow} (timeout {args.pool_timeout}s)",
        "jobs": jobs,
        "accepted": counts.get("accepted", 0),
        "finished": stack_done(counts),
        "ideal_per_s": ideal,
        "steady_per_s": rate,
        "ratio": rate / ideal,
        "peak_worker_db_connections": sampler.peak_connections,
        "peak_per_process": sampler.peak_per_process,
        # PostgreSQL sessions opened on the bench database while the workers ran (the
        # workers' connections, and the few of the bench's own polls): a pool that closes
        # and reopens connections under load shows here, and its backends' CPU is lost to
        # cpu_ms_per_job["postgres"] (counted from the backends alive at both ends)
        "sessions_opened": sessions,
        "peak_rss_mb": sampler.peak_rss_mb,
        "peak_fds": sampler.peak_fds,
        "peak_threads": sampler.peak_threads,
        "peak_redis_clients": sampler.peak_redis_clients,
        "error_lines": errors,
        "first_errors": first_errors,
        "verified": verified,
        "init_s": init_s,
        "enqueue_s": enqueue_s,
        "run_s": time.time() - started,
        "load": load,
        # CPU ms per accepted job over the run, by part; PostgreSQL counts the backends
        # alive at both ends (an overflow connection closed meanwhile takes its CPU along)
        "cpu_ms_per_job": {
            k: 1000 * v / max(1, counts.get("accepted", 0)) for k, v in cpu_used.items()
        },
    }


def sessions_opened(dbname: str) -> int:
    """PostgreSQL's count of sessions ever established to ``dbname`` (since its creation;
    ``pg_stat_database.sessions`` exists from PostgreSQL 14, and lags by up to a second)."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (dbname,)
        ).fetchone()
    return int(row[0]) if row else 0


def stack_done(counts: dict[str, int]) -> bool:
    return not any(counts.get(s, 0) for s in ("pending", "in_flight", "retry_wait", "unknown"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--branches", type=int, default=256)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=1000.0, help="simulator latency, ms")
    parser.add_argument("--seconds", type=float, default=60.0, help="run length at the ideal")
    parser.add_argument("--timeout", type=float, default=240.0, help="stop the cell after this")
    pool = DatabaseSettings()  # the product's defaults
    parser.add_argument("--pool-size", type=int, default=pool.pool_size)
    parser.add_argument("--max-overflow", type=int, default=pool.max_overflow)
    parser.add_argument("--pool-timeout", type=float, default=pool.pool_timeout_s)
    parser.add_argument(
        "--keep", action="store_true", help="keep the database and the workdir (logs)"
    )
    parser.add_argument("--poll", type=float, default=0.25, help="pg_stat_activity poll, s")
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    result = cell(args)
    dump_json(args.json, result)
    print(
        f"{result['branches']} branches, {result['workers']} x --concurrency "
        f"{result['concurrency']}, {result['latency_ms']:.0f} ms, pool {result['pool']}"
    )
    print(
        f"  steady {result['steady_per_s']:.1f} jobs/s of ideal {result['ideal_per_s']:.0f} "
        f"= ratio {result['ratio']:.2f}; accepted {result['accepted']}/{result['jobs']}"
        f"{'' if result['finished'] else ' (stopped at --timeout)'}; verify "
        f"{'ok' if result['verified'] else 'FAILED'}"
    )
    print(
        f"  peak worker DB connections {result['peak_worker_db_connections']} "
        f"(per process {sorted(result['peak_per_process'].values())}); "
        f"sessions opened while running {result['sessions_opened']}"
    )
    print(
        f"  peak RSS MB {fmt(result['peak_rss_mb'])}, fds {fmt(result['peak_fds'])}, "
        f"threads {fmt(result['peak_threads'])}, Redis clients {result['peak_redis_clients']}"
    )
    print(f"  CPU ms per accepted job: {fmt_ms(result['cpu_ms_per_job'])}")
    print(f"  error lines in worker logs: {result['error_lines']}")
    for line in result["first_errors"]:
        print(f"    {line}")
    print(f"  {result['load']}")


def fmt_ms(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in values.items())


def fmt(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.0f}" for k, v in sorted(values.items()))


if __name__ == "__main__":
    main()
