"""Operator actions on jobs and branches; every one is audited (who, when, what, why).

=========== ==================================================================================
action      what it does
=========== ==================================================================================
replay      a dead job goes back to pending at its branch's tail, same idempotency key, a
            fresh KRA number on its next send; its blocked dependents follow once it is
            accepted (worker/outbox/dependents.py unblocks them)
edit        a dead or blocked job gets a corrected payload, validated exactly like intake
            (``schemas.validation.payload_errors``); the audit row keeps the old values
skip        a dead or blocked job, or a branch's pending head (parked, or not being drained),
            is given up with a mandatory reason; dependents become blocked; its number goes
            to the next job only if no attempt may have reached KRA; a parked branch resumes
set_next    KRA's next invcNo/sarNo of a branch (after KRA was found ahead), which unparks it
unpark      a parked branch drains again once its cause is fixed (device, tax rates)
=========== ==================================================================================

Replaying an accepted job is refused: KRA signed it, and a second send would either be a
duplicate or, worse, a second signature under a new number (invariant 2). An edit keeps the
job's ``payload_hash``: the idempotency key still names what the producer submitted, so the
producer's own retry of its original record is still recognised as the same job.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine

from schemas.completion import dumps_body, loads_payload
from schemas.jobs import (
    TRADER_INVOICE_KINDS,
    JobKind,
    JobState,
    TrdInvcNoScope,
    coalescing_item,
    stock_io_type,
)
from schemas.validation import EnqueueOptions, payload_errors
from worker import metrics
from worker.next_number import CounterView, refusal
from worker.outbox import intake_queries as iq
from worker.outbox import ops_queries as oq
from worker.outbox import queries as q
from worker.outbox.dependents import block_dependents
from worker.tax_rates import with_branch_rates
from worker.wake import NullWaker, Waker

log = logging.getLogger("etims_relay.operator")

#: A job can be edited while nothing KRA holds depends on its payload.
EDITABLE = (JobState.DEAD.value, JobState.BLOCKED.value)


class OperatorError(Exception):
    """An operator action that cannot be done; the message says why."""


class JobNotFound(OperatorError):
    """No job (or branch) by that id."""


class InvalidInput(OperatorError):
    """What the operator asked is malformed: a blank reason, a bad path, an invalid payload."""


@dataclass(frozen=True, slots=True)
class Actor:
    name: str


def replay(
    engine: Engine, job_id: int, actor: Actor, *, reason: str = "", waker: Waker | None = None
) -> int:
    """Put a dead job back at its branch's tail (same idempotency key, fresh number)."""
    with engine.begin() as conn:
        branch_id = _replay_one(conn, job_id, actor, reason, time.time())
    (waker or NullWaker()).wake([branch_id])
    return branch_id


def replay_branch(
    engine: Engine,
    tin: str,
    bhf_id: str,
    actor: Actor,
    *,
    code: str | None = None,
    reason: str = "",
    waker: Waker | None = None,
) -> list[int]:
    """Replay every dead job of a branch (only KRA code ``code`` if given), in their order."""
    with engine.begin() as conn:
        branch = q.get_branch(conn, tin, bhf_id)
        if branch is None:
            raise JobNotFound(f"branch {tin}/{bhf_id} has no jobs")
        ids = oq.dead_job_ids(conn, int(branch.id), code)
        now = time.time()
        for job_id in ids:
            _replay_one(conn, job_id, actor, reason, now)
    if ids:
        (waker or NullWaker()).wake([int(branch.id)])
    return ids


def _replay_one(conn: Connection, job_id: int, actor: Actor, reason: str, now: float) -> int:
    job = _job(conn, job_id)
    if job.state != JobState.DEAD.value:
        signed = " (KRA already signed it)" if job.state == JobState.ACCEPTED.value else ""
        raise OperatorError(f"job {job_id} is {job.state}; only dead jobs can be replayed{signed}")
    if job.merged_into is not None:
        raise OperatorError(
            f"job {job_id} went inside job {job.merged_into}'s merged stock movement; replay "
            f"job {job.merged_into}, which sends it again with the others"
        )
    members = oq.dead_members(conn, job_id)
    seq = q.reserve_seq(conn, int(job.branch_id), 1 + len(members), now)
    oq.requeue_at_tail(conn, job_id, seq, now)
    # a merged send: the stock-outs it carried follow it, in their order, to be merged again
    # when it goes (or sent one by one with merging off)
    for offset, member in enumerate(members, start=1):
        oq.requeue_at_tail(conn, member, seq + offset, now)
        oq.unmerge(conn, member)
    _audit(conn, actor, "replay", job, reason, {"previous_code": job.result_code})
    return int(job.branch_id)


def edit(
    engine: Engine,
    job_id: int,
    actor: Actor,
    *,
    sets: Sequence[tuple[str, Any]] = (),
    payload: Mapping[str, Any] | None = None,
    reason: str = "",
    options: EnqueueOptions | None = None,
) -> dict[str, Any]:
    """Correct a dead or blocked job's payload (``sets`` of path=value, or a whole ``payload``).

    Raises :class:`OperatorError` listing every validation problem; nothing is written then.
    Returns the new payload.
    """
    if (payload is None) == (not sets):
        raise InvalidInput("give either --set path=value (one or more) or --payload FILE")
    with engine.begin() as conn:
        job = _job(conn, job_id)
        if job.state not in EDITABLE:
            raise OperatorError(
                f"job {job_id} is {job.state}; only dead or blocked jobs can be edited"
            )
        old = loads_payload(job.payload)
        details: dict[str, Any]
        if payload is not None:
            new, details = dict(payload), {"previous_payload": old}
        else:
            new, changes = apply_sets(old, sets)
            details = {"changes": changes}
        options = with_branch_rates(conn, options or EnqueueOptions(), [(job.tin, job.bhf_id)])
        problems = payload_errors(job.kind, job.tin, job.bhf_id, new, options)
        if problems:
            raise InvalidInput(
                "the edited payload is invalid: "
                + "; ".join(f"{p.path}: {p.message}" for p in problems)
            )
        if JobKind(job.kind) in TRADER_INVOICE_KINDS:
            scope = (options or EnqueueOptions()).trd_invc_no_scope
            _reclaim_trader_invoice(conn, job, new.get("trdInvcNo"), scope)
        item = coalescing_item(job.kind, new)
        oq.set_job_payload(conn, job_id, dumps_body(new), item, EDITABLE, time.time())
        oq.set_stock_io_type(conn, job_id, stock_io_type(job.kind, new))
        _audit(conn, actor, "edit", job, reason, details)
    return new


#: States a job can be skipped in: given up (dead, blocked), or the head a branch waits on
#: (pending, e.g. behind a park; waiting to be retried). Never in_flight or accepted.
SKIPPABLE = (
    JobState.DEAD.value,
    JobState.BLOCKED.value,
    JobState.PENDING.value,
    JobState.RETRY_WAIT.value,
    JobState.UNKNOWN.value,
)


@dataclass(frozen=True, slots=True)
class Skipped:
    """What a skip did with the job's KRA number (the operator is told)."""

    counter: str | None
    number: int | None
    #: True: handed to the next job; False: kept, because an attempt may have reached KRA.
    released: bool
    unparked: bool
    #: a merged send's carrier: the stock-outs it carried, skipped with it (the send may be
    #: at KRA) or back to pending in their places (it provably never reached KRA)
    members_skipped: tuple[int, ...] = ()
    members_pending: tuple[int, ...] = ()

    def describe(self) -> str:
        return self._number() + self._members()

    def _number(self) -> str:
        if self.number is None:
            return "it held no KRA number"
        if self.released:
            return f"its {self.counter} {self.number} goes to the next job"
        return (
            f"its {self.counter} {self.number} may be at KRA and is not reused; if KRA holds "
            f"nothing under it, run etims-relay branch set-next --{_flag(self.counter)} "
            f"{self.number}"
        )

    def _members(self) -> str:
        said = ""
        if self.members_skipped:
            said += "; skipped with it, as its merged send carried them: jobs " + ", ".join(
                map(str, self.members_skipped)
            )
        if self.members_pending:
            said += (
                "; its merged send never reached KRA, so the stock-outs it carried wait in "
                "their places again: jobs " + ", ".join(map(str, self.members_pending))
            )
        return said


def _reclaim_trader_invoice(conn: Connection, job: Any, number: Any, scope: TrdInvcNoScope) -> None:
    """An edited trdInvcNo moves the job's claim, refused (as enqueue would) if another job of
    the scope carries the new number: the fix for a 994 must not cause the next one."""
    number = None if number is None else str(number)
    if number == job.trd_invc_no:
        return
    where = scope.claim(job.tin, job.bhf_id) if number is not None else None
    if number is not None and where is not None:
        for row in iq.jobs_with_trader_invoices(conn, job.tin, [number]):
            if row.idempotency_key != job.idempotency_key and (
                scope.claim(job.tin, row.bhf_id) == where
            ):
                raise OperatorError(
                    f"trdInvcNo {number!r} is already used by idempotency_key "
                    f"{row.idempotency_key!r} ({scope.value} {where})"
                )
    oq.set_trader_invoice(conn, int(job.id), number, where)


def skip(engine: Engine, job_id: int, actor: Actor, *, reason: str) -> Skipped:
    """Give up on a job, with a reason; its dependents become blocked.

    A dead or blocked job, or the pending head of a branch (a parked one, or one no drain
    holds). Its number goes to the next job only when no attempt may have reached KRA;
    skipping the head of a parked branch unparks it. Skipping a stock master that carries
    superseded ones leaves KRA's balance of its item at the last one accepted until the next
    stock master of the item (docs/operations.md).
    """
    if not reason.strip():
        raise InvalidInput("skip needs a reason (--reason TEXT)")
    now = time.time()
    with engine.begin() as conn:
        job = _job(conn, job_id)  # which branch to lock; the job is read again under it
        branch = q.get_branch(conn, job.tin, job.bhf_id, for_update=True)
        # read again, locked: whether its number goes back depends on what a drain
        # recorded up to now (maybe_recorded), not on the row as it was before the lock
        job = _job(conn, job_id, for_update=True)
        if job.state not in SKIPPABLE:
            raise OperatorError(
                f"job {job_id} is {job.state}; only dead, blocked or pending jobs can be skipped"
            )
        parked = branch is not None and branch.parked_reason is not None
        active = job.state not in (JobState.DEAD.value, JobState.BLOCKED.value)
        if active and not parked and branch is not None and (branch.lease_until or 0) > now:
            raise OperatorError(
                f"branch {job.tin}/{job.bhf_id} is being drained; skip job {job_id} once it "
                "parks or the drain ends"
            )
        if not oq.mark_skipped(conn, job_id, reason, now, states=SKIPPABLE):
            raise OperatorError(f"job {job_id} changed meanwhile; look at it again")
        done = _skipped_number(conn, job, active, parked, now)
        done = _with_members(conn, job, reason, done, now)
        block_dependents(conn, [job_id, *done.members_skipped], now)
        details = {
            "previous_state": job.state,
            "number": done.number,
            "counter": done.counter,
            "number_released": done.released,
            "unparked": done.unparked,
            "members_skipped": list(done.members_skipped),
            "members_pending": list(done.members_pending),
        }
        _audit(conn, actor, "skip", job, reason, details)
    return done


def _with_members(conn: Connection, job: Any, reason: str, done: Skipped, now: float) -> Skipped:
    """A skipped carrier's members: given up with it while its merged send may be at KRA
    (their lines would be there under its number); back to pending in their places when it
    provably never reached KRA, so that no stock-out is given up for a send that never
    happened."""
    if _may_be_at_kra(job):
        skipped = oq.skip_members(conn, int(job.id), reason, now)
        return dataclasses.replace(done, members_skipped=tuple(skipped))
    pending = oq.release_dead_or_merged_members(conn, int(job.id), now)
    return dataclasses.replace(done, members_pending=tuple(pending))


def _may_be_at_kra(job: Any) -> bool:
    return bool(job.maybe_recorded) or job.state == JobState.UNKNOWN.value


def _skipped_number(conn: Connection, job: Any, active: bool, parked: bool, now: float) -> Skipped:
    """Release the skipped job's number if no attempt may have reached KRA; unpark."""
    counter = JobKind(job.kind).numbered_by
    number = job.invc_no if counter == "invcNo" else job.sar_no
    released = False
    if counter is not None and number is not None:
        released = not _may_be_at_kra(job) and q.give_back_number(
            conn, int(job.branch_id), counter, int(number)
        )
        if released:
            q.forget_released_number(conn, int(job.id))
    unparked = active and parked
    if unparked:
        q.unpark(conn, int(job.branch_id), now)
    return Skipped(counter, None if number is None else int(number), released, unparked)


def unpark(
    engine: Engine,
    tin: str,
    bhf_id: str,
    actor: Actor,
    *,
    reason: str,
    waker: Waker | None = None,
) -> None:
    """Let a parked branch drain again once the cause is fixed (device, tax rates); its
    head is sent again exactly as it was (a held number keeps its body if it may be at KRA)."""
    if not reason.strip():
        raise InvalidInput("unpark needs a reason (--reason TEXT)")
    with engine.begin() as conn:
        branch = q.get_branch(conn, tin, bhf_id)
        if branch is None:
            raise JobNotFound(f"branch {tin}/{bhf_id} has no jobs")
        if branch.parked_reason is None:
            raise OperatorError(f"branch {tin}/{bhf_id} is not parked")
        q.unpark(conn, int(branch.id), time.time())
        details = {"was_parked": branch.parked_reason}
        _write_audit(conn, actor, "unpark", None, tin, bhf_id, reason, details)
    (waker or NullWaker()).wake([int(branch.id)])


def _flag(counter: str | None) -> str:
    return "sar" if counter == "sarNo" else "invc"


def counter_views(
    conn: Connection, branch: Any, kra_expects: Mapping[str, int] | None = None
) -> dict[str, CounterView]:
    """What the outbox (and KRA, where it named a number) says of both counters of ``branch``."""
    named = {
        "invcNo": branch.kra_expected_invc_no,
        "sarNo": branch.kra_expected_sar_no,
        **(kra_expects or {}),
    }
    views = {}
    for name, column, current in (
        ("invcNo", "invc_no", branch.next_invc_no),
        ("sarNo", "sar_no", branch.next_sar_no),
    ):
        accepted, held = oq.highest_numbers(conn, int(branch.id), column)
        views[name] = CounterView(name, int(current), accepted, held, named.get(name))
    return views


def branch_counters(
    engine: Engine, tin: str, bhf_id: str, kra_expects: Mapping[str, int] | None = None
) -> dict[str, CounterView]:
    """Both counters of a branch as :func:`set_next` will judge them (shown before it acts)."""
    with engine.connect() as conn:
        branch = q.get_branch(conn, tin, bhf_id)
        if branch is None:
            raise JobNotFound(f"branch {tin}/{bhf_id} has no jobs")
        return counter_views(conn, branch, kra_expects)


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
    force: bool = False,
    kra_expects: Mapping[str, int] | None = None,
) -> dict[str, CounterView]:
    """Set KRA's next invcNo/sarNo for a branch (after KRA was found ahead) and unpark it.

    A move backwards (onto a number a job of ours holds) or ahead of the next free number
    needs ``force`` and a reason, unless KRA named that number itself (``kra_expects``):
    see :mod:`worker.next_number`. Returns the counters as they were judged.
    """
    if invc_no is None and sar_no is None:
        raise InvalidInput("give --invc and/or --sar")
    if (invc_no is not None and invc_no < 1) or (sar_no is not None and sar_no < 1):
        raise InvalidInput("numbers start at 1")
    if force and not reason.strip():
        raise InvalidInput("--force needs a reason (--reason TEXT): it is audited")
    now = time.time()
    with engine.begin() as conn:
        # the branch row first, then its jobs: the order skip and a drain's start lock in
        branch = q.get_branch(conn, tin, bhf_id, for_update=True)
        if branch is None:
            raise JobNotFound(f"branch {tin}/{bhf_id} has no jobs")
        if branch.parked_reason is None and (branch.lease_until or 0) > now:
            # a drain holds the branch: a sale of it may be at KRA this moment under the
            # number it holds, and what the drain records next must not meet a counter
            # moved under it
            raise OperatorError(
                f"branch {tin}/{bhf_id} is being drained (a job may be at KRA right now); "
                "set its next number once the branch parks or the drain ends"
            )
        views = counter_views(conn, branch, kra_expects)
        proposed = {"invcNo": invc_no, "sarNo": sar_no}
        for counter, number in proposed.items():
            if number is not None:  # never overridden by --force: that would sign twice
                _numbers_give_way(conn, int(branch.id), counter, number)
        refusals = [
            why
            for name, number in proposed.items()
            if number is not None and (why := refusal(views[name], number)) is not None
        ]
        if refusals and not force:  # the transaction rolls back what gave way above
            raise OperatorError("; ".join(refusals) + ". Use --force with --reason to insist")
        q.set_branch_counters(conn, int(branch.id), invc_no=invc_no, sar_no=sar_no, now=now)
        details = {
            "invc_no": invc_no,
            "sar_no": sar_no,
            "previous_invc_no": branch.next_invc_no,
            "previous_sar_no": branch.next_sar_no,
            "last_accepted_invc_no": views["invcNo"].last_accepted,
            "last_accepted_sar_no": views["sarNo"].last_accepted,
            "kra_expects": dict(kra_expects or {}),
            "forced_past": refusals,
            "was_parked": branch.parked_reason,
        }
        _write_audit(conn, actor, "set_next", None, tin, bhf_id, reason, details)
    (waker or NullWaker()).wake([int(branch.id)])
    return views


def _numbers_give_way(conn: Connection, branch_id: int, counter: str, number: int) -> None:
    """Jobs still to go that hold a number: one that may be at KRA keeps it, so the branch's
    next number must be above it (else a second job would get it); one that never reached
    KRA with it takes a fresh number from the new counter."""
    held = q.numbers_held(conn, branch_id, counter)
    kept = [row for row in held if row.possibly_at_kra and int(row.number) >= number]
    if kept:
        row = max(kept, key=lambda r: int(r.number))
        raise OperatorError(
            f"job {row.id} ({row.idempotency_key}) holds {counter} {row.number}, which may be "
            f"at KRA and will be resent with it: the next number must be above it "
            f"(--{'sar' if counter == 'sarNo' else 'invc'} {int(row.number) + 1}), or skip "
            "that job first"
        )
    q.drop_unsent_numbers(conn, [int(r.id) for r in held if not r.possibly_at_kra], counter)


def job_details(engine: Engine, job_id: int) -> dict[str, Any]:
    """Everything an operator needs about one job: payload, every attempt, dependencies, audit."""
    with engine.connect() as conn:
        job = _job(conn, job_id)
        tries = oq.job_attempts(conn, job_id)
        deps = oq.job_dependency_keys(conn, job_id)
        history = oq.audit_entries(conn, job_id=job_id)
    return {
        "id": job.id,
        "kind": job.kind,
        "branch": f"{job.tin}/{job.bhf_id}",
        "idempotency_key": job.idempotency_key,
        "state": job.state,
        "result_code": job.result_code,
        "result_message": job.result_message,
        "attempts": [
            {
                "number": a.number,
                "kra_number": a.kra_number,
                "at": a.started_at,
                "outcome": a.outcome,
                "result_code": a.result_code,
                "message": a.message,
                "http_status": a.http_status,
                "error": a.error,
                "latency_ms": round(float(a.latency_s) * 1000, 1),
                "worker": a.worker,
            }
            for a in tries
        ],
        "depends_on": [{"idempotency_key": k, "state": s} for k, s in deps],
        "payload": loads_payload(job.payload),
        "audit": [audit_row(r) for r in history],
    }


def audit_row(row: Any) -> dict[str, Any]:
    """An audit_log row as JSON-ready data."""
    return {
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "job_id": row.job_id,
        "branch": f"{row.tin}/{row.bhf_id}" if row.tin else None,
        "reason": row.reason,
        "details": json.loads(row.details) if row.details else None,
    }


# --------------------------------------------------------------------------- payload paths


def parse_set(text: str) -> tuple[str, Any]:
    """``path=value``; the value is JSON when it parses (numbers exact), else a string."""
    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise InvalidInput(
            f"--set wants path=value (e.g. itemList.0.itemCd=KE2NT...), got {text!r}"
        )
    try:
        value = json.loads(raw, parse_float=Decimal)
    except json.JSONDecodeError:
        value = raw
    return path.strip(), value


def apply_sets(
    payload: Mapping[str, Any], sets: Sequence[tuple[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A copy of ``payload`` with each dotted path set; and the list of (path, old, new)."""
    new: dict[str, Any] = json.loads(dumps_body(payload), parse_float=Decimal)
    changes = []
    for path, value in sets:
        parts = path.split(".")
        parent: Any = new
        for part in parts[:-1]:
            parent = _step(parent, part, path)
        last = parts[-1]
        if isinstance(parent, list):
            index = _index(parent, last, path)
            old, parent[index] = parent[index], value
        elif isinstance(parent, dict):
            old, parent[last] = parent.get(last), value
        else:
            raise InvalidInput(f"{path}: {last!r} is inside a value that is not an object")
        changes.append({"path": path, "old": old, "new": value})
    return new, changes


def _step(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if isinstance(node, dict) and part in node:
        return node[part]
    raise InvalidInput(f"{path}: no {part!r} in the payload")


def _index(node: list[Any], part: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise InvalidInput(f"{path}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


# --------------------------------------------------------------------------- helpers


def _job(conn: Connection, job_id: int, *, for_update: bool = False) -> Any:
    job = iq.get_job(conn, job_id, for_update=for_update)
    if job is None:
        raise JobNotFound(f"job {job_id} does not exist")
    return job


def _audit(
    conn: Connection, actor: Actor, action: str, job: Any, reason: str, details: dict[str, Any]
) -> None:
    _write_audit(conn, actor, action, int(job.id), job.tin, job.bhf_id, reason, details)


def _write_audit(
    conn: Connection,
    actor: Actor,
    action: str,
    job_id: int | None,
    tin: str,
    bhf_id: str,
    reason: str,
    details: dict[str, Any],
) -> None:
    """One audit row, one log line (no payload in it), one counter."""
    oq.insert_audit(
        conn,
        {
            "at": time.time(),
            "actor": actor.name,
            "action": action,
            "job_id": job_id,
            "tin": tin,
            "bhf_id": bhf_id,
            "reason": reason or None,
            "details": dumps_body(details),
        },
    )
    metrics.OPERATOR_ACTIONS.labels(action).inc()
    log.info(
        "operator %s: %s job=%s branch=%s/%s reason=%r",
        actor.name,
        action,
        job_id,
        tin,
        bhf_id,
        reason,
        extra={
            "event": "operator_action",
            "actor": actor.name,
            "action": action,
            "job_id": job_id,
            "branch": f"{tin}/{bhf_id}",
        },
    )
