"""The statements of enqueue (``producers.enqueue``): dedupe by key, insert jobs, link them.

One function per statement, each taking a ``Connection`` inside the transaction enqueue opened,
so a batch's dedupe, sequence reservation (``queries.reserve_seq``) and inserts commit together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from worker.outbox import hot
from worker.outbox.models import job_dependencies, jobs

__all__ = ["find_jobs_by_keys", "insert_dependencies", "insert_jobs", "set_original"]

#: Keys per IN list and rows per INSERT: well under either driver's parameter limit
#: (15 columns x 500 rows = 7,500 parameters).
_BATCH = 500

_FOUND_COLUMNS = (
    jobs.c.id,
    jobs.c.idempotency_key,
    jobs.c.payload_hash,
    jobs.c.state,
    jobs.c.kind,
    jobs.c.branch_id,
    jobs.c.bhf_id,
)


def find_jobs_by_keys(conn: Connection, tin: str, keys: Sequence[str]) -> dict[str, Row[Any]]:
    """Existing jobs of ``tin`` with these idempotency keys, by key."""
    found: dict[str, Row[Any]] = {}
    unique = sorted(set(keys))
    for start in range(0, len(unique), _BATCH):
        rows = conn.execute(
            select(*_FOUND_COLUMNS).where(
                jobs.c.tin == tin, jobs.c.idempotency_key.in_(unique[start : start + _BATCH])
            )
        )
        found.update({r.idempotency_key: r for r in rows})
    return found


def insert_jobs(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert jobs in the given order; return their ids in the same order.

    One multi-row ``INSERT ... RETURNING`` per batch on the driver's cursor
    (:func:`worker.outbox.hot.insert_rows`), enqueue's largest statement: SQLAlchemy's own
    batching ("insertmanyvalues") would add client CPU to every job (bench/enqueue_insert.py;
    figures in bench/README.md, 2026-12-05). Rows are matched back to their ids by
    (tin, idempotency_key), unique per job.
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    unknown = set(columns) - set(jobs.c.keys())
    if unknown:  # the names are spliced into SQL text: only ever the table's own
        raise ValueError(f"not columns of jobs: {sorted(unknown)}")
    ids: dict[tuple[str, str], int] = {}
    for start in range(0, len(rows), _BATCH):
        chunk = rows[start : start + _BATCH]
        for r in hot.insert_rows(conn, "jobs", columns, chunk, "id, tin, idempotency_key"):
            ids[(r.tin, r.idempotency_key)] = int(r.id)
    return [ids[(row["tin"], row["idempotency_key"])] for row in rows]


def insert_dependencies(conn: Connection, pairs: Sequence[tuple[int, int]]) -> None:
    """``job_id`` may only go to KRA once ``depends_on_id`` is accepted."""
    if pairs:
        conn.execute(
            insert(job_dependencies),
            [{"job_id": a, "depends_on_id": b} for a, b in pairs],
        )


def set_original(conn: Connection, job_id: int, original_job_id: int) -> None:
    """Link a credit note to the sale it credits (its orgInvcNo comes from there)."""
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(original_job_id=original_job_id))
