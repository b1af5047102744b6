"""Operator actions on jobs and branches; every one is audited (who, when, what, why).

Replaying an accepted job is refused: KRA signed it, and a second send would either be a
duplicate or, worse, a second signature under a new number (invariant 2).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from schemas.jobs import JobState
from worker.effects import block_dependents
from worker.outbox import queries as q
from worker.wake import NullWaker, Waker


class OperatorError(Exception):
    """An operator action that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class Actor:
    name: str


def replay(
    engine: Engine, job_id: int, actor: Actor, *, reason: str = "", waker: Waker | None = None
) -> int:
    """Put a dead job back at its branch's tail (same idempotency key, fresh number)."""
    now = time.time()
    with engine.begin() as conn:
        job = q.get_job(conn, job_id)
        if job is None:
            raise OperatorError(f"job {job_id} does not exist")
        if job.state != JobState.DEAD.value:
            raise OperatorError(
                f"job {job_id} is {job.state}; only dead jobs can be replayed"
                + (" (KRA already signed it)" if job.state == JobState.ACCEPTED.value else "")
            )
        seq = q.reserve_seq(conn, int(job.branch_id), 1, now)
        q.requeue_at_tail(conn, job_id, seq, now)
        _audit(conn, actor, "replay", job, reason, {"previous_code": job.result_code})
    (waker or NullWaker()).wake([int(job.branch_id)])
    return int(job.branch_id)


def skip(engine: Engine, job_id: int, actor: Actor, *, reason: str) -> None:
    """Give up on a dead or blocked job, with a reason; its dependents stay blocked."""
    if not reason.strip():
        raise OperatorError("skip needs a reason (--reason TEXT)")
    now = time.time()
    with engine.begin() as conn:
        job = q.get_job(conn, job_id)
        if job is None:
            raise OperatorError(f"job {job_id} does not exist")
        if not q.mark_skipped(conn, job_id, reason, now):
            raise OperatorError(f"job {job_id} is {job.state}; only dead or blocked jobs can be skipped")
        block_dependents(conn, [job_id], now)
        _audit(conn, actor, "skip", job, reason, {})


def set_next(
    engine: Engine,
    tin: str,
    bhf_id: str,
    actor: Actor,
    *,
    invc_no: int | None,
    sar_no: int | None,
    reason: str = "",
    waker: Waker | None = None,
) -> None:
    """Set KRA's next invcNo/sarNo for a branch (after KRA was found ahead) and unpark it."""
    if invc_no is None and sar_no is None:
        raise OperatorError("give --invc and/or --sar")
    if (invc_no is not None and invc_no < 1) or (sar_no is not None and sar_no < 1):
        raise OperatorError("numbers start at 1")
    now = time.time()
    with engine.begin() as conn:
        branch = q.get_branch(conn, tin, bhf_id)
        if branch is None:
            raise OperatorError(f"branch {tin}/{bhf_id} has no jobs")
        q.set_branch_counters(conn, int(branch.id), invc_no=invc_no, sar_no=sar_no, now=now)
        q.insert_audit(
            conn,
            {
                "at": now,
                "actor": actor.name,
                "action": "set_next",
                "tin": tin,
                "bhf_id": bhf_id,
                "reason": reason or None,
                "details": json.dumps(
                    {
                        "invc_no": invc_no,
                        "sar_no": sar_no,
                        "previous_invc_no": branch.next_invc_no,
                        "previous_sar_no": branch.next_sar_no,
                        "was_parked": branch.parked_reason,
                    }
                ),
            },
        )
    (waker or NullWaker()).wake([int(branch.id)])


def _audit(conn: object, actor: Actor, action: str, job: object, reason: str, details: dict[str, object]) -> None:
    q.insert_audit(
        conn,  # type: ignore[arg-type]
        {
            "at": time.time(),
            "actor": actor.name,
            "action": action,
            "job_id": job.id,  # type: ignore[attr-defined]
            "tin": job.tin,  # type: ignore[attr-defined]
            "bhf_id": job.bhf_id,  # type: ignore[attr-defined]
            "reason": reason or None,
            "details": json.dumps(details),
        },
    )
