"""Enqueue's job insert: ``enqueue_queries.insert_jobs`` (one multi-row ``INSERT ... RETURNING``
per batch on the driver's cursor) against SQLAlchemy Core's "insertmanyvalues" of the very
same rows, on SQLite and PostgreSQL.

Both write one multi-row INSERT per batch; the difference is the client CPU spent building
and binding it. The two are alternated batch by batch on one fresh database per store (so
the host's load hits both alike); the figure is the median CPU time of this process per job,
and the ratio driver / Core.

    python bench/enqueue_insert.py
    python bench/enqueue_insert.py --batches 80 --batch 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import create_database, drop_database, load_note, sqlite_database
from sqlalchemy import Connection, insert

from worker.outbox import enqueue_queries, queries
from worker.outbox.db import make_engine
from worker.outbox.models import jobs

Insert = Callable[[Connection, Sequence[Mapping[str, Any]]], list[int]]

#: The alternative: Core builds the multi-row INSERT, ids come back by key as in insert_jobs.
_CORE = insert(jobs).returning(jobs.c.id, jobs.c.tin, jobs.c.idempotency_key)


def core_insert(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    ids = {(r.tin, r.idempotency_key): int(r.id) for r in conn.execute(_CORE, list(rows))}
    return [ids[(row["tin"], row["idempotency_key"])] for row in rows]


def job_rows(branch_id: int, first_seq: int, count: int) -> list[dict[str, Any]]:
    """Rows shaped as ``producers.enqueue`` writes them (a one-line sale's payload size)."""
    now = time.time()
    payload = json.dumps({"invcNo": 0, "itemList": [{"itemCd": "KE1NTXU0000001" * 2}] * 4})
    return [
        {
            "branch_id": branch_id,
            "tin": "P000000001A",
            "bhf_id": "00",
            "seq": seq,
            "kind": "sale",
            "idempotency_key": f"sale-{seq}",
            "payload": payload,
            "payload_hash": "0" * 64,
            "state": "pending",
            "attempts": 0,
            "maybe_recorded": False,
            "receipt_missing": False,
            "request_id": None,
            "created_at": now,
            "updated_at": now,
        }
        for seq in range(first_seq, first_seq + count)
    ]


def measure(url: str, batches: int, size: int) -> dict[str, float]:
    engine = make_engine(url)
    with engine.begin() as conn:
        branch_id = queries.ensure_branch(conn, "P000000001A", "00", time.time())
    contenders: list[tuple[str, Insert]] = [
        ("driver", enqueue_queries.insert_jobs),
        ("core", core_insert),
    ]
    cpu_ms: dict[str, list[float]] = {name: [] for name, _ in contenders}
    seq = 1
    try:
        for number in range(batches):
            for name, fn in contenders if number % 2 else contenders[::-1]:
                rows = job_rows(branch_id, seq, size)
                seq += size
                start = time.process_time()
                with engine.begin() as conn:
                    ids = fn(conn, rows)
                cpu_ms[name].append((time.process_time() - start) / size * 1000)
                assert len(ids) == size and ids == sorted(ids), "ids out of order"
    finally:
        engine.dispose()
    return {name: statistics.median(values) for name, values in cpu_ms.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    print(load_note())
    with tempfile.TemporaryDirectory() as workdir:
        figures = {"sqlite": measure(sqlite_database(Path(workdir)), args.batches, args.batch)}
    url = create_database()
    try:
        figures["postgresql"] = measure(url, args.batches, args.batch)
    finally:
        drop_database(url)
    for store, cpu in figures.items():
        print(
            f"{store}: CPU ms per job, driver {cpu['driver']:.4f}, Core {cpu['core']:.4f}; "
            f"driver / Core {cpu['driver'] / cpu['core']:.2f}"
        )


if __name__ == "__main__":
    main()
