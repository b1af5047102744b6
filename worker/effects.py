"""What each decision writes: the job's new state and everything that follows from it.

Called by the drain inside one fenced transaction per job, so a job's state, its attempt row,
the branch's stock balance, its result event and its dependents' states change together or
not at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from schemas.codes import StockIOType
from schemas.envelope import SaleSignature
from schemas.jobs import JobKind, JobState
from schemas.qr import receipt_qr_url
from worker.decide import Accept, Dead, Decision, Park, Retry
from worker.oscu.outcome import CallOutcome
from worker.outbox import queries as q
from worker.outbox.queries import Lease
from worker.systemic import BRANCH

if TYPE_CHECKING:
    from worker.devices import Device
    from worker.drain import DrainContext

log = logging.getLogger("etims_relay.drain")

SALE_KINDS = (JobKind.SALE, JobKind.CREDIT_NOTE)


def attempt_row(
    lease: Lease, step: Any, outcome: CallOutcome, started: float, worker: str
) -> dict[str, Any]:
    """The ``attempts`` row of one OSCU call; written with the job's new state."""
    return {
        "job_id": step.job.id,
        "number": step.attempt,
        "kra_number": step.number,
        "started_at": started,
        "latency_s": outcome.latency_s,
        "outcome": outcome.kind.value,
        "result_code": outcome.result_code,
        "message": (outcome.message or "")[:2000],
        "http_status": outcome.http_status,
        "error": outcome.error,
        "request_hash": hashlib.sha256(step.body_text.encode()).hexdigest(),
        "fencing_token": lease.token,
        "worker": worker,
    }


def receipt_for(outcome: CallOutcome, kind: JobKind) -> dict[str, Any] | None:
    """The signature of a sale KRA just accepted (a recovered one comes from
    worker/recovery.py)."""
    if kind not in SALE_KINDS or outcome.data is None:
        return None
    return SaleSignature.model_validate(outcome.data).model_dump(mode="json")


def accept(
    conn: Connection,
    lease: Lease,
    step: Any,
    outcome: CallOutcome,
    receipt: dict[str, Any] | None,
    device: Device | None,
    ctx: DrainContext,
    now: float,
    attempt: dict[str, Any] | None = None,
    stock: Mapping[str, Decimal] | None = None,
    then_head: int | None = None,
    then_start: q.NextStart | None = None,
) -> tuple[set[int], q.BranchHead | None]:
    """Record the acceptance; return the branches to wake and, when ``then_head`` asks and
    the acceptance is one statement, the branch's head as it stands after it (read by that
    same statement on PostgreSQL: the drain's next prepare needs no query of its own).
    ``then_start``: the next job's in_flight mark rides along too; the head comes back
    only if it was made (see :func:`queries.update_job_fenced`). ``stock``: what an accepted
    stock movement adds to the branch's balances (:func:`stock_deltas` of its body)."""
    job = step.job
    kind = JobKind(job.kind)
    values: dict[str, Any] = {
        "state": JobState.ACCEPTED.value,
        "result_code": outcome.result_code,
        "result_message": outcome.message,
        "next_attempt_at": None,
        "accepted_at": now,
        "updated_at": now,
    }
    if kind in SALE_KINDS:
        values["receipt_missing"] = receipt is None
        if receipt is not None:
            values["receipt"] = json.dumps(receipt)
            values["qr_url"] = receipt_qr_url(
                job.tin, job.bhf_id, receipt["rcptSign"], sandbox=_sandbox(ctx)
            )
        if device is not None:
            values["sdc_id"], values["mrc_no"] = device.sdc_id, device.mrc_no
    event = event_row(job, JobState.ACCEPTED, now, {**values, "receipt": receipt})
    wakes = _wakes_dependents(job)  # then more statements follow: the head waits for them
    head = q.update_job_fenced(
        conn, lease, job.id, values, attempt=attempt, event=event, stock=stock,
        then_head=None if wakes else then_head, then_start=None if wakes else then_start,
    )  # fmt: skip
    if not wakes:
        return set(), head
    # Dependents in other branches may be heads waiting for exactly this acceptance. Branch
    # rows are locked before job rows here, as a drain's prepare step does: no deadlock.
    found = q.waiting_or_blocked_dependents(conn, job.id)
    waiting = {int(r.branch_id) for r in found if r.state == JobState.PENDING.value}
    waiting.discard(lease.branch_id)
    q.wake_branches(conn, waiting, now)
    blocked = [r for r in found if r.state == JobState.BLOCKED.value]
    woken = _propagate(conn, [job.id], now, JobState.BLOCKED, JobState.PENDING, first_level=blocked)
    return waiting | woken, None


def writes_one_statement(decision: Decision, job: Any) -> bool:
    """Whether this decision's effects are a single statement on PostgreSQL (then the drain
    runs them without a transaction around): a retry always, an acceptance unless its
    dependents must be looked at; a dead job (number, dependents) or a park never."""
    if isinstance(decision, Retry):
        return True
    return isinstance(decision, Accept) and not _wakes_dependents(job)


def _wakes_dependents(job: Any) -> bool:
    """The head query's hint (see ``queries._WAKES_DEPENDENTS``); look when there is none."""
    hint = getattr(job, "wakes_dependents", None)
    return True if hint is None else bool(hint)


def retry(
    conn: Connection,
    lease: Lease,
    step: Any,
    outcome: CallOutcome,
    decision: Retry,
    now: float,
    attempt: dict[str, Any] | None = None,
) -> None:
    q.update_job_fenced(
        conn,
        lease,
        step.job.id,
        {
            "state": decision.state.value,
            "next_attempt_at": now + decision.delay_s,
            "maybe_recorded": step.maybe_recorded,
            "result_code": outcome.result_code,
            "result_message": outcome.message,
            "updated_at": now,
        },
        attempt=attempt,
    )


def dead(
    conn: Connection,
    lease: Lease,
    step: Any,
    decision: Dead,
    now: float,
    attempt: dict[str, Any] | None = None,
) -> set[int]:
    job = step.job
    values: dict[str, Any] = {
        "state": JobState.DEAD.value,
        "result_code": decision.code,
        "result_message": decision.message,
        "next_attempt_at": None,
        "updated_at": now,
    }
    if decision.release_number:
        values.update(_released(conn, lease, job, step.number))
    event = event_row(job, JobState.DEAD, now, values)
    q.update_job_fenced(conn, lease, job.id, values, attempt=attempt, event=event)
    return block_dependents(conn, [job.id], now)


def park(
    conn: Connection,
    lease: Lease,
    step: Any,
    decision: Park,
    now: float,
    attempt: dict[str, Any] | None = None,
) -> None:
    """The branch stops; the job waits at its head. Its number is released only when KRA
    provably does not hold it; a held number keeps the exact body when an attempt may have
    reached KRA (a resend must repeat it), else the body is rebuilt with the same number
    once the cause is fixed (a corrected tax rate)."""
    job = step.job
    values: dict[str, Any] = {"state": JobState.PENDING.value, "updated_at": now}
    if decision.release_number:
        values.update(_released(conn, lease, job, step.number))
    elif not step.maybe_recorded:
        values["body"] = None
    else:
        values["maybe_recorded"] = True
    q.update_job_fenced(conn, lease, job.id, values, attempt=attempt)
    reason = decision.reason.replace(BRANCH, f"{job.tin}/{job.bhf_id}")
    expected = decision.expected
    q.park_branch(
        conn, lease, reason, now,
        expected=(expected.counter, expected.expected) if expected is not None else None,
    )  # fmt: skip
    log.error("branch %s/%s parked: %s", job.tin, job.bhf_id, reason)


def block(conn: Connection, lease: Lease, job: Any, blocked_by: int, now: float) -> set[int]:
    """The head's dependency can never be satisfied: block it (and what depends on it)."""
    q.update_job_fenced(
        conn,
        lease,
        job.id,
        {"state": JobState.BLOCKED.value, "blocked_by": blocked_by, "updated_at": now},
    )
    _event(conn, job, JobState.BLOCKED, now, {})
    return block_dependents(conn, [job.id], now)


def _released(conn: Connection, lease: Lease, job: Any, number: int | None) -> dict[str, Any]:
    counter = JobKind(job.kind).numbered_by
    if counter is None or number is None:
        return {"body": None}
    q.release_number(conn, lease, counter, number)
    return {"body": None, "invc_no" if counter == "invcNo" else "sar_no": None}


def block_dependents(conn: Connection, job_ids: Iterable[int], now: float) -> set[int]:
    """Block pending jobs that depend (transitively) on ``job_ids``; return their branches."""
    return _propagate(conn, job_ids, now, JobState.PENDING, JobState.BLOCKED)


def _propagate(
    conn: Connection,
    job_ids: Iterable[int],
    now: float,
    src: JobState,
    dst: JobState,
    first_level: list[Any] | None = None,
) -> set[int]:
    """Move dependents (transitively) from ``src`` to ``dst``; ``first_level`` saves the first
    query when the caller already holds the direct dependents in ``src``."""
    frontier, branches = list(job_ids), set()
    seen: set[int] = set(frontier)
    while frontier:
        found = (
            first_level if first_level is not None else q.dependents(conn, frontier, [src.value])
        )
        first_level = None
        rows = list({r.id: r for r in found if r.id not in seen}.values())
        if not rows:
            break
        ids = [r.id for r in rows]
        if dst is JobState.PENDING:  # lock order: branch rows, then job rows
            q.wake_branches(conn, {int(r.branch_id) for r in rows}, now)
            q.set_state_unfenced(
                conn, ids, [src.value], {"state": dst.value, "blocked_by": None, "updated_at": now}
            )
        else:
            for row in rows:  # record which dependency blocks it, for operators
                q.set_state_unfenced(
                    conn,
                    [row.id],
                    [src.value],
                    {"state": dst.value, "blocked_by": row.depends_on_id, "updated_at": now},
                )
        for row in rows:
            if dst is JobState.BLOCKED:
                _event(conn, row, JobState.BLOCKED, now, {})
            branches.add(int(row.branch_id))
        seen.update(ids)
        frontier = ids
    return branches


def stock_deltas(body: dict[str, Any]) -> dict[str, Decimal]:
    """Quantity per item this accepted movement adds to (in) or takes from (out) the branch."""
    sign = Decimal(1) if StockIOType(str(body["sarTyCd"])).is_in else Decimal(-1)
    deltas: dict[str, Decimal] = {}
    for line in body.get("itemList", []):
        item_cd = line.get("itemCd")
        if item_cd:
            deltas[item_cd] = deltas.get(item_cd, Decimal(0)) + sign * Decimal(str(line["qty"]))
    return deltas


def event_row(job: Any, state: JobState, now: float, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``result_events`` row of a transition (what webhooks and consumers read)."""
    body = {
        "job_id": job.id,
        "idempotency_key": job.idempotency_key,
        "kind": job.kind,
        "tin": job.tin,
        "state": state.value,
        "result_code": extra.get("result_code"),
        "result_message": extra.get("result_message"),
        "receipt": extra.get("receipt"),
        "qr_url": extra.get("qr_url"),
        "at": now,
    }
    return {
        "job_id": job.id,
        "tin": job.tin,
        "state": state.value,
        "body": json.dumps(body, default=str),
        "created_at": now,
    }


def _event(conn: Connection, job: Any, state: JobState, now: float, extra: dict[str, Any]) -> None:
    q.insert_event(conn, event_row(job, state, now, extra))


def _sandbox(ctx: DrainContext) -> bool:
    return "-sbx." in ctx.settings.oscu_url or "sbx.kra" in ctx.settings.oscu_url
