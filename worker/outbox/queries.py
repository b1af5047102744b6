"""The statements of the branches (outside the drain's lease), one named function each (the
other areas have their own modules: see :mod:`worker.outbox`).

Each function takes a ``Connection`` inside a transaction the caller opened
(``with engine.begin() as conn``), so a caller composes several statements into one atomic
step. The drain's statements (lease, head, per-job writes) are plain SQL text in
``worker/outbox/sql/`` run by :mod:`worker.outbox.branch_store`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    case,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from schemas.jobs import ACTIVE_STATES, JobState
from worker.outbox.models import (
    branches,
    job_dependencies,
    jobs,
)

ACTIVE = [s.value for s in ACTIVE_STATES]

#: States a job's number can wait in without ever having gone to KRA with it: queued, or
#: waiting to be retried after an attempt that provably did not reach KRA.
UNSENT = [JobState.PENDING.value, JobState.RETRY_WAIT.value]


def possibly_at_kra() -> ColumnElement[bool]:
    """A job KRA has, or may have, recorded under the number it holds: an attempt may have
    reached KRA (maybe_recorded), or one is out right now or ended without an answer
    (in_flight, unknown). A first send is in_flight with maybe_recorded still false."""
    return or_(
        jobs.c.maybe_recorded.is_(True),
        jobs.c.state.in_([JobState.IN_FLIGHT.value, JobState.UNKNOWN.value]),
    )


# --------------------------------------------------------------------------- helpers


def _insert_ignore(
    conn: Connection, table: Any, values: Mapping[str, Any], keys: list[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on either backend."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    conn.execute(dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=keys))


# --------------------------------------------------------------------------- branches


def ensure_branch(conn: Connection, tin: str, bhf_id: str, now: float) -> int:
    """Return the branch id of (tin, bhf_id), creating the row on first use."""
    found = conn.execute(
        select(branches.c.id).where(branches.c.tin == tin, branches.c.bhf_id == bhf_id)
    ).scalar()
    if found is not None:
        return int(found)
    _insert_ignore(
        conn,
        branches,
        {
            "tin": tin,
            "bhf_id": bhf_id,
            "next_seq": 1,
            "next_invc_no": 1,
            "next_sar_no": 1,
            "fencing_token": 0,
            "created_at": now,
        },
        ["tin", "bhf_id"],
    )
    return int(
        conn.execute(
            select(branches.c.id).where(branches.c.tin == tin, branches.c.bhf_id == bhf_id)
        ).scalar_one()
    )


def reserve_seq(conn: Connection, branch_id: int, count: int, now: float) -> int:
    """Reserve ``count`` consecutive seq numbers; return the first. Marks the branch due.

    The UPDATE locks the branch row until commit, so seq order equals commit order and a
    drain never sees a lower seq appear behind one it already sent.
    """
    new_next = conn.execute(
        update(branches)
        .where(branches.c.id == branch_id)
        .values(
            next_seq=branches.c.next_seq + count,
            wake_after=case(
                (or_(branches.c.wake_after.is_(None), branches.c.wake_after > now), now),
                else_=branches.c.wake_after,
            ),
        )
        .returning(branches.c.next_seq)
    ).scalar_one()
    return int(new_next) - count


def get_branch(
    conn: Connection, tin: str, bhf_id: str, *, for_update: bool = False
) -> Row[Any] | None:
    """``for_update``: lock the row (PostgreSQL) so no drain claims the branch meanwhile."""
    query = select(branches).where(branches.c.tin == tin, branches.c.bhf_id == bhf_id)
    return conn.execute(query.with_for_update() if for_update else query).first()


def set_branch_counters(
    conn: Connection, branch_id: int, *, invc_no: int | None, sar_no: int | None, now: float
) -> None:
    """Operator action: set KRA's next numbers and unpark the branch."""
    values: dict[str, Any] = {"parked_reason": None, "parked_at": None, "wake_after": now}
    if invc_no is not None:
        values["next_invc_no"] = invc_no
        values["kra_expected_invc_no"] = None
    if sar_no is not None:
        values["next_sar_no"] = sar_no
        values["kra_expected_sar_no"] = None
    conn.execute(update(branches).where(branches.c.id == branch_id).values(**values))


def due_branches(conn: Connection, now: float, limit: int) -> list[int]:
    """Branches the sweeper must wake: due, not parked, lease free or expired."""
    rows = conn.execute(
        select(branches.c.id)
        .where(
            branches.c.wake_after <= now,
            branches.c.parked_reason.is_(None),
            or_(branches.c.lease_until.is_(None), branches.c.lease_until < now),
        )
        .order_by(branches.c.wake_after)
        .limit(limit)
    )
    return [int(r[0]) for r in rows]


def unpark(conn: Connection, branch_id: int, now: float) -> None:
    """Operator action: let the branch drain again (the cause of its park is fixed)."""
    conn.execute(
        update(branches)
        .where(branches.c.id == branch_id)
        .values(parked_reason=None, parked_at=None, wake_after=now)
    )


def give_back_number(conn: Connection, branch_id: int, counter: str, number: int) -> bool:
    """Operator skip of a job no attempt of which may have reached KRA: hand its number to
    the next job, if nothing was allocated after it."""
    column = branches.c.next_invc_no if counter == "invcNo" else branches.c.next_sar_no
    return bool(
        conn.execute(
            update(branches)
            .where(branches.c.id == branch_id, column == number + 1)
            .values({column: number})
        ).rowcount
    )


def forget_released_number(conn: Connection, job_id: int) -> None:
    """A skipped job whose number went back to the counter holds it no more (nor the body
    built with it): the next job of the branch goes under that number."""
    conn.execute(
        update(jobs).where(jobs.c.id == job_id).values(invc_no=None, sar_no=None, body=None)
    )


def numbers_held(conn: Connection, branch_id: int, counter: str) -> list[Any]:
    """Jobs of the branch still to go that already hold a KRA number of ``counter``."""
    column = jobs.c.invc_no if counter == "invcNo" else jobs.c.sar_no
    return list(
        conn.execute(
            select(
                jobs.c.id, jobs.c.idempotency_key, jobs.c.state,
                possibly_at_kra().label("possibly_at_kra"), column.label("number"),
            ).where(
                jobs.c.branch_id == branch_id,
                jobs.c.state.in_(ACTIVE),
                column.is_not(None),
            )
        )
    )  # fmt: skip


def drop_unsent_numbers(conn: Connection, job_ids: Sequence[int], counter: str) -> None:
    """These jobs never reached KRA with their number: they take a fresh one (and body).
    Only a job still waiting, none that may be at KRA: a sale out right now keeps its number
    and body whatever the caller read."""
    if job_ids:
        field = "invc_no" if counter == "invcNo" else "sar_no"
        dropped = [
            int(r[0])
            for r in conn.execute(
                update(jobs)
                .where(
                    jobs.c.id.in_(list(job_ids)),
                    and_(jobs.c.state.in_(UNSENT), not_(possibly_at_kra())),
                )
                .values({field: None, "body": None})
                .returning(jobs.c.id)
            )
        ]
        release_members(conn, dropped)


def release_members(conn: Connection, carrier_ids: Sequence[int]) -> list[int]:
    """Carriers whose body is gone, never having reached KRA with it: the stock-outs merged
    into them are pending again in their places (their next start merges afresh, or not).
    Left merged, they would wait for a send that no longer carries them. Returns their ids."""
    if not carrier_ids:
        return []
    return [
        int(r[0])
        for r in conn.execute(
            update(jobs)
            .where(
                jobs.c.merged_into.in_(list(carrier_ids)),
                jobs.c.state == JobState.MERGED.value,
            )
            .values(state=JobState.PENDING.value, merged_into=None)
            .returning(jobs.c.id)
        )
    ]


# --------------------------------------------------------------------------- dependencies


def dependency_states(conn: Connection, job_id: int) -> list[Row[Any]]:
    """(id, state, branch_id) of each job ``job_id`` depends on."""
    return list(
        conn.execute(
            select(jobs.c.id, jobs.c.state, jobs.c.branch_id)
            .join(job_dependencies, job_dependencies.c.depends_on_id == jobs.c.id)
            .where(job_dependencies.c.job_id == job_id)
        )
    )
