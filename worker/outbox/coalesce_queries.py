"""Following a superseded stock master to the job that carries its balance (what the intake
and a till waiting on a job show). The drain's own coalescing statements are named text in
``sql/drain.sql`` (``stock_master_facts``, ``supersede_job``).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from schemas.jobs import JobState

_CHAIN = text("SELECT id, state, superseded_by FROM jobs WHERE id = :job_id")


def superseding_job(conn: Connection, job_id: int, *, max_hops: int = 50) -> tuple[int, str] | None:
    """(id, state) of the job that carries a superseded job's balance: its ``superseded_by``,
    followed while that one was superseded in turn. None if ``job_id`` is not superseded.

    A chain longer than ``max_hops`` ends on a job still superseded, which says nothing of
    whether the balance reached KRA: it is reported ``pending`` (not final), so a till keeps
    asking instead of taking "superseded" as done."""
    current, hops = job_id, 0
    row = conn.execute(_CHAIN, {"job_id": current}).first()
    if row is None or row.state != JobState.SUPERSEDED.value:
        return None
    while row is not None and row.state == JobState.SUPERSEDED.value and hops < max_hops:
        if row.superseded_by is None:
            return None
        current, hops = int(row.superseded_by), hops + 1
        row = conn.execute(_CHAIN, {"job_id": current}).first()
    if row is None:
        return None
    if row.state == JobState.SUPERSEDED.value:
        return current, JobState.PENDING.value
    return current, str(row.state)
