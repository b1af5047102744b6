"""Operator actions on jobs and branches; every one is audited (who, when, what, why).

=========== ==================================================================================
action      what it does
=========== ==================================================================================
replay      a dead job goes back to pending at its branch's tail, same idempotency key, a
            fresh KRA number on its next send; its blocked dependents follow once it is
            accepted (worker/effects.py unblocks them)
edit        a dead or blocked job gets a corrected payload, validated exactly like intake
            (``schemas.validation.payload_errors``); the audit row keeps the old values
skip        a dead or blocked job is given up, with a mandatory reason; dependents stay blocked
set_next    KRA's next invcNo/sarNo of a branch (after KRA was found ahead), which unparks it
=========== ==================================================================================

Replaying an accepted job is refused: KRA signed it, and a second send would either be a
duplicate or, worse, a second signature under a new number (invariant 2). An edit keeps the
job's ``payload_hash``: the idempotency key still names what the producer submitted, so the
producer's own retry of its original record is still recognised as the same job.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine

from schemas.completion import dumps_body, loads_payload
from schemas.jobs import JobState
from schemas.validation import EnqueueOptions, payload_errors
from worker import metrics
from worker.effects import block_dependents
from worker.outbox import ops_queries as oq
from worker.outbox import queries as q
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
    seq = q.reserve_seq(conn, int(job.branch_id), 1, now)
    q.requeue_at_tail(conn, job_id, seq, now)
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
        oq.set_job_payload(conn, job_id, dumps_body(new), EDITABLE, time.time())
        _audit(conn, actor, "edit", job, reason, details)
    return new


def skip(engine: Engine, job_id: int, actor: Actor, *, reason: str) -> None:
    """Give up on a dead or blocked job, with a reason; its dependents stay blocked."""
    if not reason.strip():
        raise InvalidInput("skip needs a reason (--reason TEXT)")
    now = time.time()
    with engine.begin() as conn:
        job = _job(conn, job_id)
        if not q.mark_skipped(conn, job_id, reason, now):
            raise OperatorError(
                f"job {job_id} is {job.state}; only dead or blocked jobs can be skipped"
            )
        block_dependents(conn, [job_id], now)
        _audit(conn, actor, "skip", job, reason, {"previous_state": job.state})


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
        raise InvalidInput("give --invc and/or --sar")
    if (invc_no is not None and invc_no < 1) or (sar_no is not None and sar_no < 1):
        raise InvalidInput("numbers start at 1")
    now = time.time()
    with engine.begin() as conn:
        branch = q.get_branch(conn, tin, bhf_id)
        if branch is None:
            raise JobNotFound(f"branch {tin}/{bhf_id} has no jobs")
        q.set_branch_counters(conn, int(branch.id), invc_no=invc_no, sar_no=sar_no, now=now)
        details = {
            "invc_no": invc_no,
            "sar_no": sar_no,
            "previous_invc_no": branch.next_invc_no,
            "previous_sar_no": branch.next_sar_no,
            "was_parked": branch.parked_reason,
        }
        _write_audit(conn, actor, "set_next", None, tin, bhf_id, reason, details)
    (waker or NullWaker()).wake([int(branch.id)])


def job_details(engine: Engine, job_id: int) -> dict[str, Any]:
    """Everything an operator needs about one job: payload, every attempt, dependencies, audit."""
    with engine.connect() as conn:
        job = _job(conn, job_id)
        tries = q.job_attempts(conn, job_id)
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


def _job(conn: Connection, job_id: int) -> Any:
    job = q.get_job(conn, job_id)
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
    q.insert_audit(
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
