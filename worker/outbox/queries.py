"""The outbox's statements for enqueue, devices and operators, one named function each.

Each function takes a ``Connection`` inside a transaction the caller opened
(``with engine.begin() as conn``), so a caller composes several statements into one atomic
step. The drain's statements (lease, head, per-job writes) are plain SQL text in
``worker/outbox/sql/`` run by :mod:`worker.outbox.branch_store`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    case,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from schemas.jobs import ACTIVE_STATES, JobState
from worker.outbox import hot
from worker.outbox.models import (
    attempts,
    audit_log,
    branches,
    devices,
    job_dependencies,
    jobs,
)

ACTIVE = [s.value for s in ACTIVE_STATES]
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


def numbers_held(conn: Connection, branch_id: int, counter: str) -> list[Any]:
    """Jobs of the branch still to go that already hold a KRA number of ``counter``."""
    column = jobs.c.invc_no if counter == "invcNo" else jobs.c.sar_no
    return list(
        conn.execute(
            select(
                jobs.c.id, jobs.c.idempotency_key, jobs.c.state, jobs.c.maybe_recorded,
                column.label("number"),
            ).where(
                jobs.c.branch_id == branch_id,
                jobs.c.state.in_(ACTIVE),
                column.is_not(None),
            )
        )
    )  # fmt: skip


def drop_unsent_numbers(conn: Connection, job_ids: Sequence[int], counter: str) -> None:
    """These jobs never reached KRA with their number: they take a fresh one (and body)."""
    if job_ids:
        field = "invc_no" if counter == "invcNo" else "sar_no"
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(list(job_ids)), jobs.c.maybe_recorded.is_(False))
            .values({field: None, "body": None})
        )


# --------------------------------------------------------------------------- enqueue


def find_jobs_by_keys(conn: Connection, tin: str, keys: Sequence[str]) -> dict[str, Row[Any]]:
    """Existing jobs of ``tin`` with these idempotency keys."""
    if not keys:
        return {}
    found: dict[str, Row[Any]] = {}
    unique = sorted(set(keys))
    for start in range(0, len(unique), 500):
        rows = conn.execute(
            select(
                jobs.c.id,
                jobs.c.idempotency_key,
                jobs.c.payload_hash,
                jobs.c.state,
                jobs.c.kind,
                jobs.c.branch_id,
                jobs.c.bhf_id,
            ).where(jobs.c.tin == tin, jobs.c.idempotency_key.in_(unique[start : start + 500]))
        )
        found.update({r.idempotency_key: r for r in rows})
    return found


def insert_jobs(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert jobs in the given order; return their ids in the same order.

    Multi-row INSERTs on the driver (a batch of 100 went through SQLAlchemy's per-row
    parameter processing at a quarter of enqueue's CPU); rows are matched back to their ids
    by (tin, idempotency_key), unique per job.
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    _known(jobs, columns)
    ids: dict[tuple[str, str], int] = {}
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        for r in hot.insert_rows(conn, "jobs", columns, chunk, "id, tin, idempotency_key"):
            ids[(r.tin, r.idempotency_key)] = int(r.id)
    return [ids[(row["tin"], row["idempotency_key"])] for row in rows]


#: Rows per INSERT: 15 columns x 500 = 7,500 parameters, well under either driver's limit.
_INSERT_CHUNK = 500


def insert_dependencies(conn: Connection, pairs: Sequence[tuple[int, int]]) -> None:
    if pairs:
        conn.execute(
            insert(job_dependencies),
            [{"job_id": a, "depends_on_id": b} for a, b in pairs],
        )


def _known(table: Any, columns: tuple[str, ...]) -> None:
    """Column names are spliced into SQL text: only ever the table's own."""
    unknown = set(columns) - set(table.c.keys())
    if unknown:
        raise ValueError(f"not columns of {table.name}: {sorted(unknown)}")


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


# --------------------------------------------------------------------------- devices


def get_device(conn: Connection, tin: str, bhf_id: str) -> Row[Any] | None:
    return conn.execute(
        select(devices).where(devices.c.tin == tin, devices.c.bhf_id == bhf_id)
    ).first()


def upsert_device(conn: Connection, values: Mapping[str, Any]) -> None:
    updated = conn.execute(
        update(devices)
        .where(devices.c.tin == values["tin"], devices.c.bhf_id == values["bhf_id"])
        .values(**values)
    ).rowcount
    if not updated:
        conn.execute(insert(devices).values(**values))


def set_device_tax_rates(
    conn: Connection, tin: str, bhf_id: str, rates_json: str, now: float
) -> None:
    """Store KRA's tax rates for a device's branch (a code list sync also proves the key)."""
    conn.execute(
        update(devices)
        .where(devices.c.tin == tin, devices.c.bhf_id == bhf_id)
        .values(tax_rates=rates_json, codes_synced_at=now, key_ok_at=now)
    )


def set_device_key_ok(conn: Connection, tin: str, bhf_id: str, now: float) -> None:
    """Remember when the device's key was last accepted by KRA."""
    conn.execute(
        update(devices)
        .where(devices.c.tin == tin, devices.c.bhf_id == bhf_id)
        .values(key_ok_at=now)
    )


def list_devices(conn: Connection) -> list[Row[Any]]:
    """Every device without its key, by branch."""
    return list(
        conn.execute(
            select(
                devices.c.tin,
                devices.c.bhf_id,
                devices.c.serial,
                devices.c.sdc_id,
                devices.c.mrc_no,
                devices.c.created_at,
                devices.c.tax_rates,
                devices.c.codes_synced_at,
                devices.c.key_ok_at,
            ).order_by(devices.c.tin, devices.c.bhf_id)
        )
    )


def device_tax_rates(
    conn: Connection, keys: Iterable[tuple[str, str]] | None = None
) -> dict[tuple[str, str], str]:
    """(tin, bhf_id) -> stored rates JSON, for the devices that have rates (all, or ``keys``)."""
    query = select(devices.c.tin, devices.c.bhf_id, devices.c.tax_rates).where(
        devices.c.tax_rates.is_not(None)
    )
    if keys is not None:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        query = query.where(tuple_(devices.c.tin, devices.c.bhf_id).in_(wanted))
    return {(str(t), str(b)): str(r) for t, b, r in conn.execute(query)}


# --------------------------------------------------------------------------- operators


def get_job(conn: Connection, job_id: int) -> Row[Any] | None:
    return conn.execute(select(jobs).where(jobs.c.id == job_id)).first()


def job_attempts(conn: Connection, job_id: int) -> list[Row[Any]]:
    return list(
        conn.execute(select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.id))
    )


def job_counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state))
    counts = {state.value: 0 for state in JobState}
    counts.update({str(state): int(n) for state, n in rows})
    return counts


def branch_backlogs(conn: Connection, now: float) -> list[dict[str, Any]]:
    """Per branch: active backlog, oldest active job's age, parked reason."""
    active = (
        select(
            jobs.c.branch_id,
            func.count().label("backlog"),
            func.min(jobs.c.created_at).label("oldest"),
        )
        .where(jobs.c.state.in_(ACTIVE))
        .group_by(jobs.c.branch_id)
        .subquery()
    )
    rows = conn.execute(
        select(
            branches.c.tin,
            branches.c.bhf_id,
            branches.c.parked_reason,
            func.coalesce(active.c.backlog, 0),
            active.c.oldest,
            branches.c.next_invc_no,
            branches.c.next_sar_no,
            branches.c.kra_expected_invc_no,
            branches.c.kra_expected_sar_no,
        )
        .select_from(branches.outerjoin(active, active.c.branch_id == branches.c.id))
        .order_by(branches.c.tin, branches.c.bhf_id)
    )
    return [
        {
            "tin": tin,
            "bhf_id": bhf,
            "backlog": int(backlog),
            "oldest_pending_age_s": round(now - oldest, 3) if oldest is not None else 0.0,
            "parked": parked is not None,
            "parked_reason": parked,
            "next_invc_no": int(next_invc),
            "next_sar_no": int(next_sar),
            "kra_expects_invc_no": None if kra_invc is None else int(kra_invc),
            "kra_expects_sar_no": None if kra_sar is None else int(kra_sar),
        }
        for tin, bhf, parked, backlog, oldest, next_invc, next_sar, kra_invc, kra_sar in rows
    ]


def list_jobs_in_state(
    conn: Connection,
    state: str,
    *,
    tin: str | None = None,
    bhf_id: str | None = None,
    kind: str | None = None,
    code: str | None = None,
    since: float | None = None,
    limit: int = 1000,
) -> list[Row[Any]]:
    conditions = [jobs.c.state == state]
    if tin:
        conditions.append(jobs.c.tin == tin)
    if bhf_id:
        conditions.append(jobs.c.bhf_id == bhf_id)
    if kind:
        conditions.append(jobs.c.kind == kind)
    if code:
        conditions.append(jobs.c.result_code == code)
    if since is not None:
        conditions.append(jobs.c.updated_at >= since)
    return list(
        conn.execute(select(jobs).where(and_(*conditions)).order_by(jobs.c.id).limit(limit))
    )


def requeue_at_tail(
    conn: Connection,
    job_id: int,
    seq: int,
    now: float,
    payload: str | None = None,
    payload_hash: str | None = None,
) -> int:
    """Replay: a dead job goes back to pending at its branch's tail with a fresh number."""
    values: dict[str, Any] = {
        "state": JobState.PENDING.value,
        "seq": seq,
        "attempts": 0,
        "next_attempt_at": None,
        "maybe_recorded": False,
        "invc_no": None,
        "sar_no": None,
        "body": None,
        "updated_at": now,
    }
    if payload is not None:
        values["payload"] = payload
        values["payload_hash"] = payload_hash
    return conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == JobState.DEAD.value)
        .values(**values)
    ).rowcount


def mark_skipped(
    conn: Connection,
    job_id: int,
    reason: str,
    now: float,
    states: Sequence[str] = (JobState.DEAD.value, JobState.BLOCKED.value),
) -> int:
    return conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state.in_(list(states)))
        .values(
            state=JobState.SKIPPED.value, skip_reason=reason, next_attempt_at=None, updated_at=now
        )
    ).rowcount


def insert_audit(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(insert(audit_log).values(**values))


def list_audit(conn: Connection, limit: int = 200) -> list[Row[Any]]:
    return list(conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)))


def set_original(conn: Connection, job_id: int, original_job_id: int) -> None:
    """Link a credit note to the sale it credits (its orgInvcNo comes from there)."""
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(original_job_id=original_job_id))


def defer_wake(conn: Connection, branch_ids: Sequence[int], now: float, until: float) -> None:
    """The sweeper sent a wake: do not send another before ``until`` unless work changes."""
    if branch_ids:
        conn.execute(
            update(branches)
            .where(branches.c.id.in_(list(branch_ids)), branches.c.wake_after <= now)
            .values(wake_after=until)
        )


def unpark_if(conn: Connection, tin: str, bhf_id: str, *, reason_prefix: str, now: float) -> None:
    """Clear a park whose cause is now fixed (e.g. the device was registered)."""
    conn.execute(
        update(branches)
        .where(
            branches.c.tin == tin,
            branches.c.bhf_id == bhf_id,
            branches.c.parked_reason.like(f"{reason_prefix}%"),
        )
        .values(parked_reason=None, parked_at=None, wake_after=now)
    )
