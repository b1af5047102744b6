"""A worker's branches in flight are not capped by its database pool (issue 16).

A drain waits on KRA for a whole round trip per job; it must not hold a pooled database
connection meanwhile, or a worker can only have as many branches in flight as its pool has
connections. Here a real ``etims-relay worker`` with 16 threads and a pool of 2 connections
drains 16 branches against a simulator that takes a second per call: KRA must see the 16
branches' calls overlap, every job must be accepted in order, and the worker's log must hold
no traceback and no pool timeout.

And the pool itself, on real PostgreSQL: each connection names its process in
``application_name``; an exhausted pool is a wait for the next free connection, and only past
``ETIMS_DATABASE__POOL_TIMEOUT_S`` an error (which the drain task turns into a retry).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from schemas.settings import DatabaseSettings
from simulator.process import SimulatorProcess
from simulator.verify import verify_ledger
from tests.helpers import RelayEnv, WorkerPool, all_terminal, wait_until
from tests.workload import TIN, branch_ids, workload
from worker.device_init import init_device
from worker.outbox.db import make_engine
from worker.runtime import build_runtime

BRANCHES = 16
JOBS_PER_BRANCH = 6
LATENCY_MS = 1000
#: 16 branches of 6 jobs at 1 s per call drain in about 10 s when all are in flight at once;
#: two at a time (the pool) would take about a minute.
DRAIN_TIMEOUT_S = 150


@pytest.fixture
def slow_simulator(tmp_path: Path) -> Iterator[SimulatorProcess]:
    """KRA at a realistic round trip: a second per call."""
    sim = SimulatorProcess(
        tmp_path / "ledger.jsonl", latency_ms=LATENCY_MS, log_path=tmp_path / "simulator.log"
    )
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def small_pool_env(
    tmp_path: Path, pg_url: str, redis_url: str, slow_simulator: SimulatorProcess, secret_key: str
) -> RelayEnv:
    relay = RelayEnv.make(tmp_path, pg_url, redis_url, slow_simulator.url, secret_key)
    relay.extra.update(
        ETIMS_DATABASE__POOL_SIZE="2",
        ETIMS_DATABASE__MAX_OVERFLOW="0",
        ETIMS_DATABASE__POOL_TIMEOUT_S="5",
        # a second per call: timeouts and lease sized for it
        ETIMS_OSCU__READ_TIMEOUT_S="5",
        ETIMS_DRAIN__LEASE_TTL_S="20",
    )
    return relay


def init_devices(relay: RelayEnv, branches: list[str]) -> None:
    runtime = build_runtime(relay.settings(), need_broker=False)

    def one(bhf: str) -> None:
        init_device(
            runtime.engine,
            runtime.client,
            runtime.devices,
            tin=TIN,
            bhf_id=bhf,
            serial=f"SER-{bhf}",
        )

    try:
        with ThreadPoolExecutor(len(branches)) as pool:
            list(pool.map(one, branches))
    finally:
        runtime.close()


def most_calls_in_flight_at_once(database_url: str) -> int:
    """The largest number of OSCU calls that overlapped in time, from the attempts table."""
    engine = make_engine(database_url)
    with engine.connect() as conn:
        spans = conn.execute(text("SELECT started_at, latency_s FROM attempts")).all()
    engine.dispose()
    edges = sorted(
        [(float(start), 1) for start, _ in spans]
        + [(float(start) + float(latency), -1) for start, latency in spans]
    )
    most = current = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        current += step
        most = max(most, current)
    return most


@pytest.mark.slow
def test_sixteen_threads_on_a_pool_of_two_keep_sixteen_branches_in_flight(
    small_pool_env: RelayEnv, slow_simulator: SimulatorProcess, tmp_path: Path
) -> None:
    # Given 16 branches with work, KRA at 1 s per call, and a worker with 16 threads whose
    # database pool holds 2 connections
    branches = branch_ids(BRANCHES)
    init_devices(small_pool_env, branches)
    records = workload(BRANCHES, JOBS_PER_BRANCH)
    workers = WorkerPool(small_pool_env)
    try:
        workers.start(1, concurrency=BRANCHES)

        # When every job is enqueued
        small_pool_env.enqueue(records)

        # Then every job is accepted (at 16 branches in flight, in about 10 s) and KRA's
        # ledger verifies
        try:
            status = wait_until(
                lambda: (s := small_pool_env.status()) and all_terminal(s) and s,
                timeout=DRAIN_TIMEOUT_S,
                what="all jobs terminal",
            )
        except AssertionError:
            jobs = small_pool_env.status()["jobs"]
            pool_timeouts = workers.logs().count("no database connection within")
            pytest.fail(
                f"{len(records)} jobs not drained in {DRAIN_TIMEOUT_S} s: {jobs}; "
                f"{pool_timeouts} pool timeouts in the worker's log"
            )
    finally:
        workers.stop_all()
    assert status["jobs"]["accepted"] == len(records), status
    report = verify_ledger(slow_simulator.ledger)
    assert report.ok, report.violations

    # And the branches were in flight together, not two at a time as the pool would allow
    # if a drain held its connection while waiting on KRA
    in_flight = most_calls_in_flight_at_once(small_pool_env.database_url)
    assert in_flight >= BRANCHES * 3 // 4, f"at most {in_flight} OSCU calls in flight at once"

    # And the worker never ran out of connections: no pool timeout, no traceback
    log = workers.logs()
    for needle in ("Traceback", "QueuePool limit", "no database connection within"):
        assert needle not in log, f"{needle!r} in the worker's log:\n{log[-4000:]}"


def test_each_connection_names_its_process_and_a_url_name_wins(pg_url: str) -> None:
    engine = make_engine(pg_url, role="worker")
    named = make_engine(pg_url + "?application_name=till-sync", role="worker")
    try:
        with engine.connect() as conn:
            assert str(conn.scalar(text("SHOW application_name"))).startswith("etims-relay-worker:")
        with named.connect() as conn:
            assert conn.scalar(text("SHOW application_name")) == "till-sync"
    finally:
        engine.dispose()
        named.dispose()


def test_an_exhausted_pool_is_a_wait_for_the_next_free_connection(pg_url: str) -> None:
    pool = DatabaseSettings(pool_size=1, max_overflow=0, pool_timeout_s=10)
    engine = make_engine(pg_url, pool=pool)
    held = engine.connect()
    release = threading.Timer(0.5, held.close)
    try:
        release.start()
        started = time.monotonic()
        with engine.connect() as conn:  # waits for the held connection, no error
            assert conn.scalar(text("SELECT 1")) == 1
        assert 0.4 <= time.monotonic() - started < 10
    finally:
        release.cancel()
        held.close()
        engine.dispose()


def test_a_pool_that_stays_busy_times_out_after_the_setting(pg_url: str) -> None:
    pool = DatabaseSettings(pool_size=1, max_overflow=0, pool_timeout_s=0.5)
    engine = make_engine(pg_url, pool=pool)
    held = engine.connect()
    try:
        with pytest.raises(PoolTimeout, match="QueuePool limit of size 1 overflow 0"):
            engine.connect()
    finally:
        held.close()
        engine.dispose()


def backends_used_by_bursts(engine: Engine, threads: int, bursts: int) -> set[int]:
    """The PostgreSQL backends ``threads`` threads got, all taking a connection at once for a
    short step, ``bursts`` times, with a pause between bursts (drains whose KRA answers
    arrive together, then all wait on KRA again)."""
    seen: set[int] = set()
    lock = threading.Lock()
    # a thread that fails breaks the barrier, so the others stop instead of waiting for it
    together = threading.Barrier(threads, timeout=30)

    def borrow_in_bursts() -> None:
        try:
            for _ in range(bursts):
                together.wait()
                with engine.begin() as conn:
                    pid = int(conn.scalar(text("SELECT pg_backend_pid()")))
                    time.sleep(0.005)
                with lock:
                    seen.add(pid)
                time.sleep(0.05)  # idle between bursts: every connection handed back
        except BaseException:
            together.abort()
            raise

    with ThreadPoolExecutor(threads) as workers:
        futures = [workers.submit(borrow_in_bursts) for _ in range(threads)]
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:  # the first real failure, not the broken barrier it left behind
        broken = threading.BrokenBarrierError
        raise next((e for e in errors if not isinstance(e, broken)), errors[0])
    return seen


def test_a_busy_process_reuses_its_connections_instead_of_reopening_them(pg_url: str) -> None:
    """A pool with overflow closes each overflow connection handed back while its core is
    idle, and opens a new one at the next burst: a PostgreSQL backend started and warmed per
    borrowing. At 512 branches in flight over two worker processes that churn cost about 0.1
    of the ideal throughput (bench/README.md); the default pool opens each connection once.
    Each burst asks for more connections than the pool may hold, so any overflow is used."""
    defaults = DatabaseSettings()
    engine = make_engine(pg_url)  # the pool every process gets unless told otherwise
    threads = defaults.pool_size + defaults.max_overflow + 12
    try:
        backends = backends_used_by_bursts(engine, threads=threads, bursts=10)
    finally:
        engine.dispose()
    assert len(backends) <= defaults.pool_size + defaults.max_overflow
