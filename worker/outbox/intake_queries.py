"""The statements of the intake area (API keys, intake reads, webhooks), one function each.

As everywhere in :mod:`worker.outbox`, each function takes a ``Connection`` inside a transaction
the caller opened, so a caller can compose several into one atomic step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, delete, exists, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from schemas.jobs import ACTIVE_STATES, JobState
from worker.outbox.intake_models import api_keys, webhook_deliveries, webhooks
from worker.outbox.models import branches, job_dependencies, jobs, result_events

ACTIVE = [s.value for s in ACTIVE_STATES]

# --------------------------------------------------------------------------- health


def ping(conn: Connection) -> None:
    """Round trip to the database (readiness)."""
    conn.execute(select(literal(1))).scalar_one()


# --------------------------------------------------------------------------- API keys


def insert_api_key(conn: Connection, values: Mapping[str, Any]) -> None:
    """Store a new key's public id and hash (never the key itself)."""
    conn.execute(insert(api_keys).values(**values))


def get_api_key(conn: Connection, key_id: str) -> Row[Any] | None:
    """The key row for a public key id, revoked or not."""
    return conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()


def list_api_keys(conn: Connection, tin: str | None = None) -> list[Row[Any]]:
    """Every key (optionally of one tin), oldest first."""
    query = select(api_keys).order_by(api_keys.c.id)
    if tin:
        query = query.where(api_keys.c.tin == tin)
    return list(conn.execute(query))


def revoke_api_key(conn: Connection, key_id: str, now: float) -> int:
    """Revoke a key that is still active; returns 1 if it was."""
    return conn.execute(
        update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount


# --------------------------------------------------------------------------- job reads


def get_job(conn: Connection, job_id: int, *, for_update: bool = False) -> Row[Any] | None:
    """One job with everything the status view shows (locked with ``for_update``)."""
    query = select(jobs).where(jobs.c.id == job_id)
    return conn.execute(query.with_for_update() if for_update else query).first()


def find_job_by_key(conn: Connection, tin: str, key: str) -> Row[Any] | None:
    """The job of ``tin`` with idempotency key ``key``."""
    return conn.execute(
        select(jobs).where(jobs.c.tin == tin, jobs.c.idempotency_key == key)
    ).first()


def jobs_with_trader_invoices(conn: Connection, tin: str, numbers: Sequence[str]) -> list[Row[Any]]:
    """Jobs of ``tin`` (any branch, any state) carrying one of these trdInvcNo values."""
    found: list[Row[Any]] = []
    unique = sorted(set(numbers))
    for start in range(0, len(unique), 500):
        found.extend(
            conn.execute(
                select(jobs.c.idempotency_key, jobs.c.bhf_id, jobs.c.trd_invc_no)
                .where(jobs.c.tin == tin, jobs.c.trd_invc_no.in_(unique[start : start + 500]))
                .order_by(jobs.c.id)
            )
        )
    return found


def jobs_of_request(conn: Connection, request_id: str, limit: int) -> list[Row[Any]]:
    """Jobs first written by one intake request, in write order."""
    return list(
        conn.execute(
            select(jobs).where(jobs.c.request_id == request_id).order_by(jobs.c.id).limit(limit)
        )
    )


def merged_member_ids(conn: Connection, carrier_id: int) -> list[int]:
    """Ids of the stock-outs carrier ``carrier_id``'s merged send carries or carried, in
    their order (ix_jobs_merged_into). A park that dropped its body or a replay lets them
    go (``merged_into`` cleared): they are listed again only once a send carries them."""
    rows = conn.execute(
        select(jobs.c.id).where(jobs.c.merged_into == carrier_id).order_by(jobs.c.seq)
    )
    return [int(r[0]) for r in rows]


def dependency_keys(conn: Connection, job_id: int) -> list[str]:
    """Idempotency keys of the jobs ``job_id`` waits for."""
    dep = jobs.alias("dep")
    rows = conn.execute(
        select(dep.c.idempotency_key)
        .join(job_dependencies, job_dependencies.c.depends_on_id == dep.c.id)
        .where(job_dependencies.c.job_id == job_id)
        .order_by(dep.c.seq)
    )
    return [str(r[0]) for r in rows]


def branch_summary(conn: Connection, tin: str, bhf_id: str) -> dict[str, Any] | None:
    """Jobs by state, oldest active job's creation time and park state of one branch."""
    branch = conn.execute(
        select(branches).where(branches.c.tin == tin, branches.c.bhf_id == bhf_id)
    ).first()
    if branch is None:
        return None
    counts = {state.value: 0 for state in JobState}
    rows = conn.execute(
        select(jobs.c.state, func.count())
        .where(jobs.c.branch_id == branch.id)
        .group_by(jobs.c.state)
    )
    counts.update({str(state): int(n) for state, n in rows})
    oldest = conn.execute(
        select(func.min(jobs.c.created_at)).where(
            jobs.c.branch_id == branch.id, jobs.c.state.in_(ACTIVE)
        )
    ).scalar()
    return {
        "counts": counts,
        "oldest_active_at": None if oldest is None else float(oldest),
        "parked_reason": branch.parked_reason,
        "parked_at": branch.parked_at,
    }


# --------------------------------------------------------------------------- webhooks


def max_event_id(conn: Connection, tin: str) -> int:
    """The newest result event of ``tin`` (0 if none): a new webhook starts after it."""
    value = conn.execute(select(func.max(result_events.c.id)).where(result_events.c.tin == tin))
    return int(value.scalar() or 0)


def upsert_webhook(
    conn: Connection, tin: str, url: str, secret_encrypted: str, cursor: int, now: float
) -> None:
    """Set the tin's receiver; a new webhook starts at ``cursor``, a changed one keeps its own."""
    updated = conn.execute(
        update(webhooks)
        .where(webhooks.c.tin == tin)
        .values(url=url, secret_encrypted=secret_encrypted, updated_at=now)
    ).rowcount
    if not updated:
        conn.execute(
            insert(webhooks).values(
                tin=tin,
                url=url,
                secret_encrypted=secret_encrypted,
                event_cursor=cursor,
                created_at=now,
                updated_at=now,
            )
        )


def delete_webhook(conn: Connection, tin: str) -> int:
    """Remove the tin's receiver; its pending deliveries fail at their next claim."""
    return conn.execute(delete(webhooks).where(webhooks.c.tin == tin)).rowcount


def get_webhook(conn: Connection, tin: str) -> Row[Any] | None:
    return conn.execute(select(webhooks).where(webhooks.c.tin == tin)).first()


def list_webhooks(conn: Connection) -> list[Row[Any]]:
    return list(conn.execute(select(webhooks).order_by(webhooks.c.tin)))


def schedule_deliveries(
    conn: Connection, webhook: Row[Any], now: float, settle_s: float, limit: int
) -> int:
    """Create a pending delivery for each of the webhook's events that has none; move the cursor.

    The cursor only bounds the scan. It advances over events older than ``settle_s`` (a
    transaction that took its id earlier has committed by then), never past an event still
    without a delivery, so an event committed out of id order is still found.
    """
    events = result_events
    has_delivery = exists().where(webhook_deliveries.c.event_id == events.c.id)
    candidates = (
        select(
            events.c.id,
            events.c.tin,
            literal("pending"),
            literal(0),
            literal(now),
            literal(now),
        )
        .where(events.c.tin == webhook.tin, events.c.id > webhook.event_cursor, ~has_delivery)
        .order_by(events.c.id)
        .limit(limit)
    )
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    created = conn.execute(
        dialect.insert(webhook_deliveries)
        .from_select(
            ["event_id", "tin", "state", "attempts", "next_attempt_at", "created_at"], candidates
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    ).rowcount
    in_scan = (events.c.tin == webhook.tin, events.c.id > webhook.event_cursor)
    settled = conn.execute(
        select(func.max(events.c.id)).where(*in_scan, events.c.created_at < now - settle_s)
    ).scalar()
    missing = conn.execute(select(func.min(events.c.id)).where(*in_scan, ~has_delivery)).scalar()
    if settled is not None:
        bound = int(settled) if missing is None else min(int(settled), int(missing) - 1)
        if bound > webhook.event_cursor:
            conn.execute(
                update(webhooks)
                .where(webhooks.c.tin == webhook.tin, webhooks.c.event_cursor < bound)
                .values(event_cursor=bound)
            )
    return max(created, 0)


def claim_deliveries(
    conn: Connection, token: str, now: float, ttl_s: float, limit: int
) -> list[Row[Any]]:
    """Claim due deliveries for ``token``: nobody else POSTs them until ``now + ttl_s``.

    The claim is one conditional UPDATE: on PostgreSQL a row another worker claimed in the
    meantime fails the re-checked WHERE; SQLite runs one writer at a time.
    """
    d = webhook_deliveries
    free = or_(d.c.claimed_until.is_(None), d.c.claimed_until < now)
    due = (
        select(d.c.id)
        .where(d.c.state == "pending", d.c.next_attempt_at <= now, free)
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(limit)
    )
    claimed = conn.execute(
        update(d)
        .where(d.c.id.in_(due.scalar_subquery()), d.c.state == "pending", free)
        .values(claim_token=token, claimed_until=now + ttl_s)
        .returning(d.c.id)
    ).all()
    if not claimed:
        return []
    return list(
        conn.execute(
            select(
                d.c.id,
                d.c.event_id,
                d.c.tin,
                d.c.attempts,
                d.c.created_at,
                result_events.c.state.label("event_state"),
                result_events.c.body.label("event_body"),
                result_events.c.created_at.label("event_created_at"),
                jobs.c.request_id,
                webhooks.c.url,
                webhooks.c.secret_encrypted,
            )
            .join(result_events, result_events.c.id == d.c.event_id)
            .join(jobs, jobs.c.id == result_events.c.job_id)
            .outerjoin(webhooks, webhooks.c.tin == d.c.tin)
            .where(d.c.id.in_([r[0] for r in claimed]), d.c.claim_token == token)
            .order_by(d.c.event_id)
        )
    )


def finish_delivery(
    conn: Connection,
    delivery_id: int,
    token: str,
    *,
    state: str,
    attempts: int,
    next_attempt_at: float,
    status: int | None,
    error: str | None,
    now: float,
) -> int:
    """Record one POST's result, only while our claim holds; releases the claim."""
    values: dict[str, Any] = {
        "state": state,
        "attempts": attempts,
        "next_attempt_at": next_attempt_at,
        "last_status": status,
        "last_error": error,
        "claim_token": None,
        "claimed_until": None,
    }
    if state == "delivered":
        values["delivered_at"] = now
    return conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.claim_token == token)
        .values(**values)
    ).rowcount


def delivery_counts(conn: Connection, tin: str | None = None) -> dict[str, int]:
    """Deliveries by state (optionally of one tin)."""
    query = select(webhook_deliveries.c.state, func.count()).group_by(webhook_deliveries.c.state)
    if tin:
        query = query.where(webhook_deliveries.c.tin == tin)
    counts = {"pending": 0, "delivered": 0, "failed": 0}
    counts.update({str(state): int(n) for state, n in conn.execute(query)})
    return counts


def list_deliveries(
    conn: Connection, tin: str, limit: int, states: Sequence[str]
) -> list[Row[Any]]:
    """Newest deliveries of a tin in ``states``, for the CLI."""
    return list(
        conn.execute(
            select(webhook_deliveries)
            .where(webhook_deliveries.c.tin == tin, webhook_deliveries.c.state.in_(list(states)))
            .order_by(webhook_deliveries.c.id.desc())
            .limit(limit)
        )
    )
