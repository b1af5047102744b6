"""The SQL of operator actions and ops reads: job and branch views (CLI, intake ops routes),
replay and skip, the audit log, the sweeper's wake deferral, metrics gauges, notices and
authority notifications.

One named function per statement, each taking a ``Connection`` inside a transaction the
caller opened, so a caller composes several into one atomic step. The scrape-time reads are
bounded on purpose (a ``LIMIT`` inside every count, index walks instead of scans): they run on
every Prometheus scrape of every process, with possibly a million pending jobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from schemas.jobs import ACTIVE_STATES, JobState
from worker.outbox.models import attempts, audit_log, branches, devices, job_dependencies, jobs
from worker.outbox.ops_models import (
    notice_syncs,
    notices,
    notification_registrations,
    notifications,
)
from worker.outbox.queries import possibly_at_kra

ACTIVE = [s.value for s in ACTIVE_STATES]

# --------------------------------------------------------------------------- jobs and branches


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


def dead_members(conn: Connection, carrier_id: int) -> list[int]:
    """The stock-outs that died with carrier ``carrier_id``'s merged send, in their order."""
    query = select(jobs.c.id).where(
        jobs.c.merged_into == carrier_id, jobs.c.state == JobState.DEAD.value
    )
    return [int(r[0]) for r in conn.execute(query.order_by(jobs.c.seq))]


def unmerge(conn: Connection, job_id: int) -> None:
    """A replayed stock-out no longer names the carrier it died with."""
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(merged_into=None))


def release_dead_or_merged_members(conn: Connection, carrier_id: int, now: float) -> list[int]:
    """Skip of a carrier whose merged send provably never reached KRA: the stock-outs it was
    to carry (merged, or dead with it) are pending again in their places, merged into
    nothing, to go in their turn."""
    waiting = (JobState.DEAD.value, JobState.MERGED.value)
    return [
        int(r[0])
        for r in conn.execute(
            update(jobs)
            .where(jobs.c.merged_into == carrier_id, jobs.c.state.in_(waiting))
            .values(
                state=JobState.PENDING.value, merged_into=None, next_attempt_at=None,
                updated_at=now,
            )
            .returning(jobs.c.id)
        )
    ]  # fmt: skip


def skip_members(conn: Connection, carrier_id: int, reason: str, now: float) -> list[int]:
    """Skip of a carrier: the stock-outs that were to go inside its send are given up with it."""
    waiting = (JobState.DEAD.value, JobState.MERGED.value)
    ids = [
        int(r[0])
        for r in conn.execute(
            select(jobs.c.id).where(jobs.c.merged_into == carrier_id, jobs.c.state.in_(waiting))
        )
    ]
    if ids:
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(ids), jobs.c.state.in_(waiting))
            .values(
                state=JobState.SKIPPED.value,
                skip_reason=f"skipped with job {carrier_id}, whose merged send carried it: "
                f"{reason}",
                next_attempt_at=None,
                updated_at=now,
            )
        )
    return ids


def set_stock_io_type(conn: Connection, job_id: int, sar_ty_cd: str | None) -> None:
    """Operator edit of a stock movement: the type the drain knows it by follows the payload."""
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(sar_ty_cd=sar_ty_cd))


def insert_audit(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(insert(audit_log).values(**values))


def defer_wake(conn: Connection, branch_ids: Sequence[int], now: float, until: float) -> None:
    """The sweeper sent a wake: do not send another before ``until`` unless work changes."""
    if branch_ids:
        conn.execute(
            update(branches)
            .where(branches.c.id.in_(list(branch_ids)), branches.c.wake_after <= now)
            .values(wake_after=until)
        )


# --------------------------------------------------------------------------- scrape-time reads


def capped_job_counts(
    conn: Connection, states: Sequence[str], kinds: Sequence[str], cap: int
) -> list[tuple[str, str, int]]:
    """Jobs per (state, kind), each count stopping at ``cap`` (one round trip, bounded work)."""
    parts = []
    for state in states:
        for kind in kinds:
            capped = (
                select(literal(1).label("one"))
                .select_from(jobs)
                .where(jobs.c.state == state, jobs.c.kind == kind)
                .limit(cap)
                .subquery()
            )
            count = select(func.count()).select_from(capped).scalar_subquery()
            parts.append(select(literal(state), literal(kind), count))
    if not parts:
        return []
    rows = conn.execute(union_all(*parts))
    return [(str(s), str(k), int(n)) for s, k, n in rows]


def oldest_created_at(conn: Connection, states: Sequence[str]) -> float | None:
    """``created_at`` of the oldest job in ``states`` (one index probe per state)."""
    found = [
        conn.execute(select(func.min(jobs.c.created_at)).where(jobs.c.state == state)).scalar()
        for state in states
    ]
    values = [float(v) for v in found if v is not None]
    return min(values) if values else None


def oldest_branches(
    conn: Connection, states: Sequence[str], count: int, walk: int
) -> list[tuple[str, str, float]]:
    """The ``count`` branches whose oldest job in ``states`` is oldest: (tin, bhf_id, created_at).

    Walks at most ``walk`` jobs per state in ``created_at`` order (index
    ``ix_jobs_state_created_at``); a branch's first appearance is its oldest job, so the result
    is an exact prefix of the true ranking, shorter than ``count`` only when the ``walk``
    oldest jobs belong to fewer branches.
    """
    rows: list[tuple[int, float]] = []
    for state in states:
        rows += [
            (int(b), float(c))
            for b, c in conn.execute(
                select(jobs.c.branch_id, jobs.c.created_at)
                .where(jobs.c.state == state)
                .order_by(jobs.c.created_at)
                .limit(walk)
            )
        ]
    rows.sort(key=lambda row: row[1])
    first_seen: dict[int, float] = {}
    for branch_id, created in rows:
        if branch_id not in first_seen:
            first_seen[branch_id] = created
            if len(first_seen) == count:
                break
    if not first_seen:
        return []
    names = {
        int(r.id): (str(r.tin), str(r.bhf_id))
        for r in conn.execute(
            select(branches.c.id, branches.c.tin, branches.c.bhf_id).where(
                branches.c.id.in_(list(first_seen))
            )
        )
    }
    return [(*names[b], created) for b, created in first_seen.items() if b in names]


def parked_branches(conn: Connection) -> tuple[int, float | None]:
    """How many branches are parked, and since when the oldest one is."""
    row = conn.execute(
        select(func.count(), func.min(branches.c.parked_at)).where(
            branches.c.parked_reason.is_not(None)
        )
    ).one()
    return int(row[0]), (None if row[1] is None else float(row[1]))


def blocked_branches(conn: Connection, cap: int) -> tuple[int, float | None]:
    """Branches holding blocked jobs, and when the longest-blocked of them was blocked.

    Reads at most ``cap`` blocked jobs (oldest first), so a pile of blocked jobs stays cheap.
    """
    sample = (
        select(jobs.c.branch_id, jobs.c.updated_at)
        .where(jobs.c.state == JobState.BLOCKED.value)
        .order_by(jobs.c.created_at)
        .limit(cap)
        .subquery()
    )
    row = conn.execute(
        select(func.count(func.distinct(sample.c.branch_id)), func.min(sample.c.updated_at))
    ).one()
    return int(row[0]), (None if row[1] is None else float(row[1]))


def unread_notice_count(conn: Connection, tin: str | None = None, bhf_id: str | None = None) -> int:
    """Notices nobody has marked read (optionally of one taxpayer / branch)."""
    query = select(func.count()).select_from(notices).where(notices.c.read_at.is_(None))
    if tin:
        query = query.where(notices.c.tin == tin)
    if bhf_id:
        query = query.where(notices.c.bhf_id == bhf_id)
    return int(conn.execute(query).scalar_one())


def flagged_device_counts(conn: Connection, events: Sequence[str]) -> dict[str, int]:
    """Per event: distinct devices with an unacknowledged notification of that event."""
    device = (
        func.coalesce(notifications.c.tin, "") + "/" + func.coalesce(notifications.c.bhf_id, "")
    )
    rows = conn.execute(
        select(notifications.c.event, func.count(func.distinct(device)))
        .where(notifications.c.event.in_(list(events)), notifications.c.acknowledged_at.is_(None))
        .group_by(notifications.c.event)
    )
    counts = dict.fromkeys(events, 0)
    counts.update({str(e): int(n) for e, n in rows})
    return counts


# --------------------------------------------------------------------------- replay tooling


def set_job_payload(
    conn: Connection,
    job_id: int,
    payload: str,
    stock_item_cd: str | None,
    states: Sequence[str],
    now: float,
) -> int:
    """Operator edit: replace the payload of a job not yet accepted (body re-frozen on send),
    and the item coalescing knows it by (``schemas.jobs.coalescing_item`` of the new payload):
    a stale one would let it supersede another item's stock master."""
    return conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state.in_(list(states)))
        .values(payload=payload, body=None, stock_item_cd=stock_item_cd, updated_at=now)
    ).rowcount


def set_trader_invoice(
    conn: Connection, job_id: int, number: str | None, scope: str | None
) -> None:
    """Operator edit: the job's trdInvcNo and where it is claimed (see producers/enqueue.py)."""
    conn.execute(
        update(jobs).where(jobs.c.id == job_id).values(trd_invc_no=number, trd_invc_scope=scope)
    )


def dead_job_ids(conn: Connection, branch_id: int, code: str | None) -> list[int]:
    """Dead jobs of a branch in their original order (optionally only KRA code ``code``). A
    stock-out that died inside a merged send is not one of them: replaying its carrier
    brings it back."""
    query = select(jobs.c.id).where(
        jobs.c.branch_id == branch_id,
        jobs.c.state == JobState.DEAD.value,
        jobs.c.merged_into.is_(None),
    )
    if code:
        query = query.where(jobs.c.result_code == code)
    return [int(r[0]) for r in conn.execute(query.order_by(jobs.c.seq))]


def job_dependency_keys(conn: Connection, job_id: int) -> list[tuple[str, str]]:
    """(idempotency_key, state) of each job ``job_id`` depends on."""
    return [
        (str(k), str(s))
        for k, s in conn.execute(
            select(jobs.c.idempotency_key, jobs.c.state)
            .join(job_dependencies, job_dependencies.c.depends_on_id == jobs.c.id)
            .where(job_dependencies.c.job_id == job_id)
            .order_by(jobs.c.seq)
        )
    ]


def audit_entries(
    conn: Connection,
    *,
    job_id: int | None = None,
    action: str | None = None,
    since: float | None = None,
    limit: int = 200,
) -> list[Row[Any]]:
    """Audit rows, newest first."""
    query = select(audit_log)
    if job_id is not None:
        query = query.where(audit_log.c.job_id == job_id)
    if action:
        query = query.where(audit_log.c.action == action)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    return list(conn.execute(query.order_by(audit_log.c.id.desc()).limit(limit)))


# --------------------------------------------------------------------------- notices


def initialised_devices(conn: Connection) -> list[tuple[str, str]]:
    """(tin, bhf_id) of every device we hold a cmcKey for."""
    return [
        (str(t), str(b))
        for t, b in conn.execute(
            select(devices.c.tin, devices.c.bhf_id).order_by(devices.c.tin, devices.c.bhf_id)
        )
    ]


def notice_last_req_dt(conn: Connection, tin: str, bhf_id: str) -> str | None:
    """The ``lastReqDt`` to send on the device's next notice sync (None: never synced)."""
    value = conn.execute(
        select(notice_syncs.c.last_req_dt).where(
            notice_syncs.c.tin == tin, notice_syncs.c.bhf_id == bhf_id
        )
    ).scalar()
    return None if value is None else str(value)


def save_notice_sync(conn: Connection, tin: str, bhf_id: str, last_req_dt: str, now: float) -> None:
    """Remember where the device's notice sync got to."""
    updated = conn.execute(
        update(notice_syncs)
        .where(notice_syncs.c.tin == tin, notice_syncs.c.bhf_id == bhf_id)
        .values(last_req_dt=last_req_dt, synced_at=now)
    ).rowcount
    if not updated:
        _insert_ignore(
            conn,
            notice_syncs,
            {"tin": tin, "bhf_id": bhf_id, "last_req_dt": last_req_dt, "synced_at": now},
            ["tin", "bhf_id"],
        )


def insert_notice(conn: Connection, values: Mapping[str, Any]) -> bool:
    """Store a notice unless (tin, bhf_id, notice_no) is already there; True if new."""
    return _insert_ignore(conn, notices, values, ["tin", "bhf_id", "notice_no"])


def list_notices(
    conn: Connection,
    *,
    tin: str | None = None,
    bhf_id: str | None = None,
    is_read: bool | None = None,
    limit: int = 200,
) -> list[Row[Any]]:
    """Notices, newest first."""
    query = select(notices)
    if tin:
        query = query.where(notices.c.tin == tin)
    if bhf_id:
        query = query.where(notices.c.bhf_id == bhf_id)
    if is_read is True:
        query = query.where(notices.c.read_at.is_not(None))
    elif is_read is False:
        query = query.where(notices.c.read_at.is_(None))
    return list(conn.execute(query.order_by(notices.c.id.desc()).limit(limit)))


def _notice_filter(
    query: Any, tin: str | None, bhf_ids: Sequence[str] | None, is_read: bool | None
) -> Any:
    if tin:
        query = query.where(notices.c.tin == tin)
    if bhf_ids is not None:
        query = query.where(notices.c.bhf_id.in_(list(bhf_ids)))
    if is_read is True:
        query = query.where(notices.c.read_at.is_not(None))
    elif is_read is False:
        query = query.where(notices.c.read_at.is_(None))
    return query


def page_notices(
    conn: Connection,
    *,
    tin: str | None,
    bhf_ids: Sequence[str] | None,
    is_read: bool | None,
    limit: int,
    offset: int,
) -> tuple[list[Row[Any]], int]:
    """One page of notices, newest first, and how many match in all."""
    rows = conn.execute(
        _notice_filter(select(notices), tin, bhf_ids, is_read)
        .order_by(notices.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), count_notices(conn, tin=tin, bhf_ids=bhf_ids, is_read=is_read)


def count_notices(
    conn: Connection, *, tin: str | None, bhf_ids: Sequence[str] | None, is_read: bool | None
) -> int:
    """How many notices match (of a tin, of some branches, read or not)."""
    query = _notice_filter(select(func.count()).select_from(notices), tin, bhf_ids, is_read)
    return int(conn.execute(query).scalar_one())


def get_notice(conn: Connection, notice_id: int) -> Row[Any] | None:
    """One notice by our id."""
    return conn.execute(select(notices).where(notices.c.id == notice_id)).first()


def mark_notice_read(conn: Connection, notice_id: int, actor: str, now: float) -> int:
    """Mark a notice read (first reader wins; marking again changes nothing)."""
    return conn.execute(
        update(notices)
        .where(notices.c.id == notice_id, notices.c.read_at.is_(None))
        .values(read_at=now, read_by=actor)
    ).rowcount


# --------------------------------------------------------------------------- notifications


def insert_registration(conn: Connection, name: str, key_hash: str, now: float) -> int:
    """A new notification sender; returns its id."""
    return int(
        conn.execute(
            insert(notification_registrations)
            .values(name=name, key_hash=key_hash, created_at=now)
            .returning(notification_registrations.c.id)
        ).scalar_one()
    )


def registration_by_key_hash(conn: Connection, key_hash: str) -> Row[Any] | None:
    """The live (not revoked) registration whose key hashes to ``key_hash``."""
    return conn.execute(
        select(notification_registrations).where(
            notification_registrations.c.key_hash == key_hash,
            notification_registrations.c.revoked_at.is_(None),
        )
    ).first()


def revoke_registration(conn: Connection, name: str, now: float) -> int:
    """Stop accepting pushes signed with this registration's key."""
    return conn.execute(
        update(notification_registrations)
        .where(
            notification_registrations.c.name == name,
            notification_registrations.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    ).rowcount


def device_by_serial(conn: Connection, serial: str) -> Row[Any] | None:
    """The (tin, bhf_id) whose device has this serial (an authority names devices by serial)."""
    return conn.execute(
        select(devices).where(devices.c.serial == serial).order_by(devices.c.tin, devices.c.bhf_id)
    ).first()


def insert_notification(conn: Connection, values: Mapping[str, Any]) -> bool:
    """Store a pushed event unless (registration, delivery id) is there; True if new."""
    return _insert_ignore(conn, notifications, values, ["registration_id", "delivery_id"])


def get_notification(conn: Connection, registration_id: int, delivery_id: str) -> Row[Any] | None:
    """A stored event by its sender's delivery id."""
    return conn.execute(
        select(notifications).where(
            notifications.c.registration_id == registration_id,
            notifications.c.delivery_id == delivery_id,
        )
    ).first()


def list_notifications(
    conn: Connection,
    *,
    event: str | None = None,
    tin: str | None = None,
    unacknowledged: bool = False,
    limit: int = 200,
) -> list[Row[Any]]:
    """Stored events, newest first, with their sender's name."""
    query = select(notifications, notification_registrations.c.name.label("sender")).join(
        notification_registrations,
        notification_registrations.c.id == notifications.c.registration_id,
    )
    if event:
        query = query.where(notifications.c.event == event)
    if tin:
        query = query.where(notifications.c.tin == tin)
    if unacknowledged:
        query = query.where(notifications.c.acknowledged_at.is_(None))
    return list(conn.execute(query.order_by(notifications.c.id.desc()).limit(limit)))


def acknowledge_notification(conn: Connection, notification_id: int, actor: str, now: float) -> int:
    """An operator has dealt with the event: it stops counting in the device gauges."""
    return conn.execute(
        update(notifications)
        .where(notifications.c.id == notification_id, notifications.c.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by=actor)
    ).rowcount


# --------------------------------------------------------------------------- helpers


def _insert_ignore(
    conn: Connection, table: Any, values: Mapping[str, Any], keys: list[str]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on either backend; True if a row was inserted.

    RETURNING, not ``rowcount``: psycopg reports -1 for some inserts, which reads as "new".
    """
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    first_key = next(iter(table.primary_key.columns))
    inserted = conn.execute(
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=keys)
        .returning(first_key)
    ).first()
    return inserted is not None


def highest_numbers(conn: Connection, branch_id: int, column: str) -> tuple[int | None, int | None]:
    """(highest number of an accepted job, highest number a job holds that KRA has or may
    have: see ``queries.possibly_at_kra``) for ``invc_no`` or ``sar_no``. A number that never
    reached KRA does not count: it is handed on when the counter is set (see
    ``replay._numbers_give_way``)."""
    number = jobs.c[column]
    accepted = func.max(number).filter(jobs.c.state == JobState.ACCEPTED.value)
    row = conn.execute(
        select(accepted, func.max(number)).where(
            jobs.c.branch_id == branch_id,
            number.is_not(None),
            or_(jobs.c.state == JobState.ACCEPTED.value, possibly_at_kra()),
        )
    ).one()
    return (None if row[0] is None else int(row[0])), (None if row[1] is None else int(row[1]))
