"""Enqueue rate of ``producers.enqueue`` in batches of 100, on PostgreSQL and on SQLite.

Per store and repetition, on a fresh database:

* ``enqueue``: ``tests.workload`` jobs (32 branches; items, opening stock, sale + stock-out +
  stock master, so most jobs carry ``depends_on``) go through ``producers.enqueue`` in batches
  of ``--batch`` (one branch per batch, branches taking turns): validation of envelope and
  payload, amount completion/check, dedupe by key, seq reservation, insert of jobs and
  dependencies, one transaction per batch. Once with no waker (what a bulk load does), once
  with the Celery waker on Redis (one drain message per batch, what the intake does).
* baseline ``raw insert``: the very rows ``enqueue`` wrote (read back from ``jobs``) inserted
  into a second fresh database through the bare driver (``psycopg`` / ``sqlite3``
  ``executemany``), one transaction per batch of the same size: the cost of storage alone.

The ratio enqueue / raw insert says how much of the store's write rate the intake keeps.
SQLite runs as the worker runs it (WAL, synchronous=NORMAL, BEGIN IMMEDIATE).

    python bench/enqueue_rate.py                 # both stores, 3 repetitions
    python bench/enqueue_rate.py --store sqlite --reps 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis
from _harness import (
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    chunks,
    create_database,
    drop_database,
    dump_json,
    enqueue_all,
    interleaved_batches,
    load_note,
    sqlite_database,
    summary,
)
from sqlalchemy import text

from worker.outbox.db import make_engine
from worker.wake import CeleryWaker, NullWaker

JOB_COLUMNS = (
    "branch_id",
    "tin",
    "bhf_id",
    "seq",
    "kind",
    "idempotency_key",
    "payload",
    "payload_hash",
    "state",
    "attempts",
    "maybe_recorded",
    "receipt_missing",
    "request_id",
    "created_at",
    "updated_at",
)


def fresh_url(store: str, workdir: Path) -> str:
    if store == "postgresql":
        return create_database()
    sub = Path(tempfile.mkdtemp(dir=workdir))
    return sqlite_database(sub)


def drop(store: str, url: str) -> None:
    if store == "postgresql":
        drop_database(url)


CPU_MS: dict[str, list[float]] = {}


def measure_enqueue(
    store: str, workdir: Path, batches: list[Any], waker: Any
) -> tuple[str, float, int]:
    url = fresh_url(store, workdir)
    engine = make_engine(url)
    try:
        cpu = time.process_time()
        jobs, seconds = enqueue_all(engine, batches, waker)
        cpu = time.process_time() - cpu
    finally:
        engine.dispose()
    # CPU of the enqueuing process per job: what the load on a shared machine changes least
    CPU_MS.setdefault(f"{store}/{type(waker).__name__}", []).append(cpu / jobs * 1000)
    return url, jobs / seconds, jobs


def measure_raw(store: str, workdir: Path, source_url: str, batch: int) -> float:
    """Insert the rows ``enqueue`` wrote into a fresh database with the bare driver."""
    src = make_engine(source_url)
    with src.connect() as conn:
        branches = conn.execute(
            text(
                "SELECT id, tin, bhf_id, next_seq, next_invc_no, next_sar_no, fencing_token, "
                "created_at FROM branches ORDER BY id"
            )
        ).all()
        rows = conn.execute(text(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs ORDER BY id")).all()
    src.dispose()
    url = fresh_url(store, workdir)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO branches (id, tin, bhf_id, next_seq, next_invc_no, next_sar_no, "
                    "fencing_token, created_at) VALUES (:id, :tin, :bhf_id, :next_seq, "
                    ":next_invc_no, :next_sar_no, :fencing_token, :created_at)"
                ),
                [dict(r._mapping) for r in branches],
            )
        values = [tuple(r) for r in rows]
        cols = ", ".join(JOB_COLUMNS)
        raw = engine.raw_connection()
        try:
            dbapi = raw.driver_connection
            if store == "postgresql":
                sql = f"INSERT INTO jobs ({cols}) VALUES ({', '.join(['%s'] * len(JOB_COLUMNS))})"
                started = time.perf_counter()
                for part in chunks(values, batch):
                    with dbapi.transaction(), dbapi.cursor() as cur:
                        cur.executemany(sql, part)
                seconds = time.perf_counter() - started
            else:
                sql = f"INSERT INTO jobs ({cols}) VALUES ({', '.join(['?'] * len(JOB_COLUMNS))})"
                started = time.perf_counter()
                for part in chunks(values, batch):
                    dbapi.execute("BEGIN IMMEDIATE")
                    dbapi.executemany(sql, part)
                    dbapi.execute("COMMIT")
                seconds = time.perf_counter() - started
        finally:
            raw.close()
    finally:
        engine.dispose()
        drop(store, url)
    return len(values) / seconds


def profile(args: argparse.Namespace, store: str, workdir: Path, batches: list[Any]) -> None:
    """cProfile (process CPU time) of producers.enqueue, plus SQL statements per job."""
    import collections
    import cProfile
    import io
    import pstats
    import re

    from sqlalchemy import event

    url = fresh_url(store, workdir)
    engine = make_engine(url)
    kinds: collections.Counter[str] = collections.Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn: Any, cur: Any, stmt: str, params: Any, context: Any, many: Any) -> None:
        m = re.match(r"\s*(SELECT|UPDATE \w+|INSERT INTO \w+)", stmt)
        key = m.group(1) if m else stmt.split()[0]
        if key == "SELECT":
            f = re.search(r"FROM (\w+)", stmt)
            key += f" {f.group(1) if f else '?'}"
        kinds[key] += 1

    prof = cProfile.Profile(time.process_time)
    prof.enable()
    jobs, seconds = enqueue_all(engine, batches)
    prof.disable()
    engine.dispose()
    drop(store, url)
    print(
        f"{store}: {jobs} jobs, {jobs / seconds:.0f}/s under cProfile; SQL statements per job "
        f"{sum(kinds.values()) / jobs:.2f}:"
    )
    for key, n in kinds.most_common():
        print(f"  {n / jobs:6.3f}  {key}")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(
        r"producers/|worker/|schemas/", 25
    )
    print(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["postgresql", "sqlite"], action="append")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--branches", type=int, default=32)
    parser.add_argument("--jobs-per-branch", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--profile", action="store_true", help="cProfile one run per store")
    args = parser.parse_args()
    stores = args.store or ["postgresql", "sqlite"]
    workdir = Path(tempfile.mkdtemp(prefix="etims-enqueue-"))
    batches = interleaved_batches(args.branches, args.jobs_per_branch, args.batch)
    if args.profile:
        for store in stores:
            profile(args, store, workdir, batches)
        return 0
    broker = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    rds = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    celery_waker = CeleryWaker.for_broker(broker)
    print(f"load before: {load_note()}", flush=True)
    results: dict[str, dict[str, list[float]]] = {}
    for store in stores:
        res = results.setdefault(store, {"null": [], "celery": [], "raw": []})
        for rep in range(args.reps):
            rds.flushdb()
            url, null_rate, jobs = measure_enqueue(store, workdir, batches, NullWaker())
            raw_rate = measure_raw(store, workdir, url, args.batch)
            drop(store, url)
            url, celery_rate, _ = measure_enqueue(store, workdir, batches, celery_waker)
            drop(store, url)
            res["null"].append(null_rate)
            res["celery"].append(celery_rate)
            res["raw"].append(raw_rate)
            print(
                f"{store} rep {rep}: {jobs} jobs; enqueue {null_rate:.0f}/s (no waker), "
                f"{celery_rate:.0f}/s (Celery waker); raw insert {raw_rate:.0f}/s; "
                f"{load_note()}",
                flush=True,
            )
    rds.flushdb()
    dump_json(args.json, results)
    print(f"\nproducers.enqueue, batches of {args.batch}, {args.branches} branches:")
    for store, res in results.items():
        ratio_null = [a / b for a, b in zip(res["null"], res["raw"], strict=True)]
        ratio_celery = [a / b for a, b in zip(res["celery"], res["raw"], strict=True)]
        print(f"{store}:")
        print(
            f"  enqueue, no waker     jobs/s {summary(res['null'])}   "
            f"ratio to raw insert {summary(ratio_null)}"
        )
        print(
            f"  enqueue, Celery waker jobs/s {summary(res['celery'])}   "
            f"ratio to raw insert {summary(ratio_celery)}"
        )
        print(f"  raw insert (baseline) jobs/s {summary(res['raw'])}")
        for waker in ("NullWaker", "CeleryWaker"):
            print(
                f"  enqueue CPU ms per job in the calling process ({waker}): "
                f"{summary(CPU_MS.get(f'{store}/{waker}', []))}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
