"""When KRA answers again after an outage, jobs that backed off are pulled forward.

Backoff doubles up to ``retry.cap_s`` (five minutes by default). Without this, once KRA is
back, a branch whose head had backed off to the cap sits idle for minutes while other
branches already succeed. The first acceptance of a job that had been retrying is the sign
that KRA is back: every job waiting on a transient failure or an unknown outcome gets a new
due time, spread evenly over ``retry.recovery_spread_s`` so that the fleet does not hit a
just-recovered KRA all at once. Jobs waiting on a rate limit (990, HTTP 429) keep their time:
KRA asked us to slow down. A deployment talks to one OSCU host (``ETIMS_OSCU_URL``), so "the
same host" is every branch of the outbox.

The writes are not fenced by a lease: they only move a waiting job's due time earlier
(``next_attempt_at`` and its branch's ``wake_after``), never its state, and a drain that
holds the branch re-reads both before it sends.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, or_, select, update

from schemas.jobs import JobState
from worker.oscu.outcome import OutcomeKind
from worker.outbox.models import attempts, branches, jobs

#: States of a job that is waiting for its next attempt.
_WAITING = (JobState.RETRY_WAIT.value, JobState.UNKNOWN.value)
#: Last outcomes that mean "KRA (or the way to it) was down", not "KRA asked us to wait".
_OUTAGE = (OutcomeKind.TRANSIENT.value, OutcomeKind.UNKNOWN.value)


def pull_forward(conn: Connection, now: float, *, spread_s: float, limit: int = 1000) -> int:
    """Spread the due times of jobs backing off after an outage over ``spread_s`` from now;
    return how many moved. Runs in the caller's transaction."""
    last_outcome = (
        select(attempts.c.outcome)
        .where(attempts.c.job_id == jobs.c.id)
        .order_by(attempts.c.number.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(jobs.c.id, jobs.c.branch_id)
        .where(
            jobs.c.state.in_(_WAITING),
            jobs.c.next_attempt_at > now + spread_s,
            last_outcome.in_(_OUTAGE),
        )
        .order_by(jobs.c.next_attempt_at)
        .limit(limit)
    ).all()
    for index, row in enumerate(rows):
        due = now + spread_s * (index + 1) / len(rows)
        conn.execute(
            update(jobs)
            .where(jobs.c.id == row.id, jobs.c.state.in_(_WAITING), jobs.c.next_attempt_at > due)
            .values(next_attempt_at=due)
        )
        conn.execute(
            update(branches)
            .where(
                and_(
                    branches.c.id == row.branch_id,
                    or_(branches.c.wake_after.is_(None), branches.c.wake_after > due),
                )
            )
            .values(wake_after=due)
        )
    return len(rows)
