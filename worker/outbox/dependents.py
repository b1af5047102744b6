"""Jobs that depend on a job whose fate was just decided, in any branch.

A dead (or blocked, or skipped) job blocks what depends on it, transitively; an accepted
one wakes the branches of dependents waiting for it and unblocks dependents that a replay
brought back. Dependents in other branches are written without their lease: they only move
between ``pending`` and ``blocked``, states no drain is writing, and each write is guarded
by the state it expects. Runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from schemas.jobs import JobState
from worker.outbox.named_sql import load
from worker.outbox.writes import EventJob, event_json

_SQL = load("drain.sql")
_LEASE_SQL = load("lease.sql")


@dataclass(frozen=True, slots=True)
class _Dependent:
    """A job that depends on one whose fate was just decided (``dependents_in_state``)."""

    id: int
    branch_id: int
    #: the dependency it was found through (the one that blocks it, when it is blocked)
    depends_on_id: int
    event: EventJob

    @classmethod
    def from_row(cls, row: Any) -> _Dependent:
        job = EventJob(int(row.id), str(row.idempotency_key), str(row.kind), str(row.tin))
        return cls(int(row.id), int(row.branch_id), int(row.depends_on_id), job)


def block_dependents(conn: Connection, job_ids: Iterable[int], now: float) -> frozenset[int]:
    """Block pending jobs that depend (transitively) on ``job_ids``; return their branches."""
    branches: set[int] = set()
    frontier, seen = list(job_ids), set(job_ids)
    while frontier:
        found = [r for r in _dependents(conn, frontier, JobState.PENDING) if r.id not in seen]
        for row in found:  # which dependency blocks it is kept for operators
            if _block(conn, row, now):
                _insert_event(conn, row.event, JobState.BLOCKED, now)
            branches.add(row.branch_id)
        frontier = list({r.id for r in found})
        seen.update(frontier)
    return frozenset(branches)


def wake_dependents(conn: Connection, job_id: int, branch_id: int, now: float) -> frozenset[int]:
    """``job_id`` (of ``branch_id``) was accepted: wake the other branches whose jobs wait
    for it, and unblock (transitively) the dependents a replay left blocked."""
    waiting = {r.branch_id for r in _dependents(conn, [job_id], JobState.PENDING)}
    waiting.discard(branch_id)
    _wake(conn, waiting, now)  # lock order as a drain's: branch rows, then job rows
    branches: set[int] = set(waiting)
    frontier, seen = [job_id], {job_id}
    while frontier:
        found = [r for r in _dependents(conn, frontier, JobState.BLOCKED) if r.id not in seen]
        _wake(conn, {r.branch_id for r in found}, now)
        for row in found:
            _unblock(conn, row, now)
            branches.add(row.branch_id)
        frontier = list({r.id for r in found})
        seen.update(frontier)
    return frozenset(branches)


def _dependents(conn: Connection, job_ids: list[int], state: JobState) -> list[_Dependent]:
    rows: dict[int, _Dependent] = {}
    for job_id in job_ids:
        for row in conn.execute(_SQL["dependents_in_state"], {"job_id": job_id, "state": state}):
            rows.setdefault(int(row.id), _Dependent.from_row(row))
    return list(rows.values())


def _block(conn: Connection, row: _Dependent, now: float) -> bool:
    """Pending -> blocked, naming the dependency that blocks it (for operators)."""
    params = {
        "job_id": row.id,
        "from_state": JobState.PENDING.value,
        "to_state": JobState.BLOCKED.value,
        "blocked_by": row.depends_on_id,
        "now": now,
    }
    return bool(conn.execute(_SQL["move_dependent"], params).rowcount)


def _unblock(conn: Connection, row: _Dependent, now: float) -> None:
    params = {
        "job_id": row.id,
        "from_state": JobState.BLOCKED.value,
        "to_state": JobState.PENDING.value,
        "blocked_by": None,
        "now": now,
    }
    conn.execute(_SQL["move_dependent"], params)


def _wake(conn: Connection, branch_ids: set[int], now: float) -> None:
    for branch_id in sorted(branch_ids):
        conn.execute(_LEASE_SQL["wake_branch"], {"branch_id": branch_id, "now": now})


def _insert_event(conn: Connection, job: EventJob, state: JobState, now: float) -> None:
    params = {"job_id": job.id, "tin": job.tin, "state": state.value,
              "body": event_json(job, state, now), "created_at": now}  # fmt: skip
    conn.execute(_SQL["insert_event"], params)
