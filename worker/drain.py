"""drain(branch): send one branch's jobs to OSCU, one at a time, in order. No Celery here.

    take the branch lease (fencing token)
    loop, bounded by max_jobs and max_seconds:
        prepare  pick the head job (lowest seq still active) whose dependencies are accepted,
                 allocate its invcNo/sarNo on first send, freeze its body, mark it in_flight
                 -- committed BEFORE the call
        send     one OSCU call (the client never raises; it returns a CallOutcome)
        record   attempt row + job state + side effects (stock balance, events, dependents)
                 -- atomic, fenced by the lease; then the next job's prepare

On PostgreSQL the usual job is two statements, each atomic and fenced on its own: the
result (job, attempt, event, stock) with the branch's next head read along, and the next
job's in_flight mark (with its number and the lease); they run in autocommit
(:func:`worker.outbox.hot.step`).
Anything that writes more than one statement (a dead job and its dependents, a park) is
one transaction, as is every step on SQLite.
    release the lease, leaving ``wake_after`` = when the branch is next due

A crash between prepare and record leaves the job ``in_flight``; the next lease holder treats
it as maybe-sent and resends the identical body, so a duplicate answer then means "ours".
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, Engine

from etims_relay.settings import Settings
from schemas.completion import Registrant, complete_body, dumps_body, loads_payload
from schemas.jobs import JobKind, JobState
from schemas.vat import VatScheme
from worker import effects
from worker.decide import Accept, Dead, Decision, Park, Retry, decide
from worker.devices import Device, DeviceDirectory, DeviceNotInitialised
from worker.observe import DrainObserver
from worker.oscu.client import OscuClient
from worker.oscu.outcome import CallOutcome, OutcomeKind
from worker.outbox import hot
from worker.outbox import queries as q
from worker.outbox.queries import HOPELESS, Lease, LeaseLost

log = logging.getLogger("etims_relay.drain")

#: Active jobs read per prepare step: the head, and one more to skip to if the head turns
#: out blocked (a further blocked one costs another query; that is rare).
HEAD_WINDOW = 2
#: A head waiting for a dependency in another branch is looked at again after this long at
#: the latest; normally the dependency's acceptance wakes the branch at once.
DEPENDENCY_WAIT_S = 5.0
#: OSCU round trips one job may take at most (write, its 401 re-send, receipt lookup), plus
#: one for the token fetch between them.
ROUND_TRIPS_PER_JOB = 4

Status = Literal["busy", "idle", "waiting", "more", "parked", "lease_lost"]


@dataclass
class DrainContext:
    """What a drain needs; built once per worker process and shared by its threads."""

    engine: Engine
    client: OscuClient
    devices: DeviceDirectory
    settings: Settings
    observer: DrainObserver = field(default_factory=DrainObserver)
    worker_name: str = "worker"
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    @property
    def registrant(self) -> Registrant:
        return Registrant(self.settings.registrant_id, self.settings.registrant_name)


@dataclass(frozen=True, slots=True)
class DrainReport:
    branch_id: int
    status: Status
    sent: int = 0
    #: seconds until the branch is due again (for a short Celery countdown), if known
    due_in_s: float | None = None
    #: other branches whose jobs this drain unblocked: wake them
    woken: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class _Send:
    job: Any
    body: dict[str, Any]
    #: the exact stored text of ``body``: what every resend repeats, and what attempts hash
    body_text: str
    number: int | None
    attempt: int
    maybe_recorded: bool


@dataclass(frozen=True, slots=True)
class _Wait:
    until: float
    #: Worth sleeping through inside the drain if short (a retry); a dependency in another
    #: branch is not: its acceptance wakes this branch.
    inline: bool = True


@dataclass(frozen=True, slots=True)
class _Idle:
    pass


def drain(branch_id: int, ctx: DrainContext) -> DrainReport:
    """Send the branch's due jobs in order until done, waiting, or out of budget."""
    # One pooled connection for the whole drain, a transaction per step on it: checking a
    # connection out of the pool and back for every job cost more than the job's statements.
    with ctx.engine.connect() as conn:
        return _drain(branch_id, ctx, conn)


def _drain(branch_id: int, ctx: DrainContext, conn: Connection) -> DrainReport:
    owner = f"{ctx.worker_name}:{uuid.uuid4().hex[:12]}"
    limits = ctx.settings.drain
    with conn.begin():
        lease = q.claim_lease(conn, branch_id, owner, ctx.clock(), limits.lease_ttl_s)
    if lease is None:
        return DrainReport(branch_id, "busy")
    ctx.observer.lease_taken(branch_id)
    renewal = _Renewal.for_lease(ctx.settings, ctx.clock())
    prepare_in = functools.partial(_prepare_in, renewal=renewal)
    started, sent = ctx.clock(), 0
    woken: set[int] = set()
    status: Status = "idle"
    wake_after: float | None = None
    seen_next_seq: int | None = None
    try:
        step, seen_next_seq = _prepare(conn, lease, ctx, woken, renewal)
        while True:
            if isinstance(step, _Idle):
                break
            if isinstance(step, _Wait):
                pause = step.until - ctx.clock()
                budget_left = started + limits.max_seconds - ctx.clock()
                if step.inline and pause <= limits.inline_wait_s and pause < budget_left:
                    ctx.sleep(max(pause, 0.0))
                    step, seen_next_seq = _prepare(conn, lease, ctx, woken, renewal)
                    continue
                status, wake_after = "waiting", step.until
                break
            within_budget = (
                sent + 1 < limits.max_jobs and ctx.clock() - started < limits.max_seconds
            )
            # One step per job: this job's result, then the next job's start (the next head
            # is prepared inside the record step).
            then = prepare_in if within_budget else None
            decision, following = _send_and_record(conn, lease, step, ctx, woken, then)
            sent += 1
            if isinstance(decision, Park):
                status = "parked"
                break
            if following is None:
                status, wake_after = "more", ctx.clock()
                break
            step, seen_next_seq = following
    except LeaseLost:
        ctx.observer.lease_lost(branch_id)
        return DrainReport(branch_id, "lease_lost", sent, 0.0, frozenset(woken))
    except Exception:
        # A database or programming error: hand the branch back now rather than at lease
        # expiry (wake_after stays set, so the sweeper retries it), then let the task fail.
        _release_quietly(lease, ctx)
        raise
    with conn.begin():
        settled = q.release_lease(conn, lease, wake_after=wake_after, seen_next_seq=seen_next_seq)
    if not settled and status in ("idle", "waiting"):
        status, wake_after = "more", ctx.clock()
    due_in = None if wake_after is None else max(0.0, wake_after - ctx.clock())
    return DrainReport(branch_id, status, sent, due_in, frozenset(woken))


def _release_quietly(lease: Lease, ctx: DrainContext) -> None:
    try:
        with ctx.engine.begin() as conn:
            q.release_lease(conn, lease, wake_after=ctx.clock(), seen_next_seq=None)
    except Exception:  # the lease will expire on its own
        log.exception("branch %s: could not release the lease after an error", lease.branch_id)


# --------------------------------------------------------------------------- prepare


def _prepare(
    conn: Connection, lease: Lease, ctx: DrainContext, woken: set[int], renewal: _Renewal
) -> tuple[Any, int | None]:
    """Pick the head and make it ready to send, committed before the call.

    Its writes are single fenced statements (the in_flight mark with the number and the
    lease), so on PostgreSQL it needs no transaction; blocking a hopeless head takes one.
    """
    with hot.step(conn, single_statements=True):
        return _prepare_in(conn, lease, ctx, woken, renewal=renewal)


@dataclass(slots=True)
class _Renewal:
    """When the lease was last pushed out, and how often it must be.

    Every send leaves at least :data:`ROUND_TRIPS_PER_JOB` OSCU round trips (connect + read
    timeout each) on the lease: the most one job can take is its write, one re-send after a
    401 with a fresh token, and a receipt lookup. The extension rides on the job's in_flight
    write (the same statement on PostgreSQL). With a TTL longer than the margin it is only
    written once the margin is being eaten into; with the default TTL, at every send. Writes
    are fenced by the token either way; this is what keeps a second worker from *sending*
    meanwhile.
    """

    extended_at: float
    every_s: float

    @classmethod
    def for_lease(cls, settings: Settings, claimed_at: float) -> _Renewal:
        round_trip = settings.oscu.connect_timeout_s + settings.oscu.read_timeout_s
        margin = ROUND_TRIPS_PER_JOB * round_trip
        return cls(claimed_at, max(0.0, settings.drain.lease_ttl_s - margin))

    def due(self, now: float) -> bool:
        return now - self.extended_at >= self.every_s


def _prepare_in(
    conn: Connection,
    lease: Lease,
    ctx: DrainContext,
    woken: set[int],
    head: q.BranchHead | None = None,
    *,
    renewal: _Renewal,
) -> tuple[Any, int | None]:
    """The prepare step inside the caller's transaction (committed before the call).

    ``head``: the branch's head as the previous job's result statement already read it.
    """
    now = ctx.clock()
    while True:
        if head is None:
            head = q.head_candidates(conn, lease.branch_id, HEAD_WINDOW)
        if not head.candidates:
            return _Idle(), head.next_seq
        for job, deps in head.candidates:
            verdict, culprit = _dependencies_verdict(deps)
            if verdict == "hopeless":
                with hot.atomic(conn):
                    woken |= effects.block(conn, lease, job, culprit, now)
                continue
            if verdict == "waiting":
                return _Wait(now + DEPENDENCY_WAIT_S, inline=False), head.next_seq
            if job.next_attempt_at is not None and job.next_attempt_at > now:
                return _Wait(job.next_attempt_at), head.next_seq
            try:
                return _start(conn, lease, job, head, ctx, now, renewal), head.next_seq
            except q.CounterMoved:
                # An operator set the branch's next number since the head was read; nothing
                # was written. Read again and build the body with the number as it is now.
                log.info("branch %s: counter set meanwhile; preparing again", lease.branch_id)
                break
        head = None  # a head was blocked, or the counter moved: read the branch again


def _dependencies_verdict(deps: list[tuple[int, str]]) -> tuple[str, int]:
    """ready, waiting (a dependency is still on its way) or hopeless (dead/blocked/skipped)."""
    for dep_id, state in deps:
        if state in HOPELESS:
            return "hopeless", dep_id
    if any(state != JobState.ACCEPTED.value for _, state in deps):
        return "waiting", 0
    return "ready", 0


def _start(
    conn: Connection,
    lease: Lease,
    job: Any,
    head: q.BranchHead,
    ctx: DrainContext,
    now: float,
    renewal: _Renewal,
) -> Any:
    """Freeze the body (taking the KRA number on first send) and mark it in_flight.

    The number is the branch's next as the head query read it: the body is built with it
    first, then one fenced write takes it (compare-and-set), stores the body, marks the job
    in_flight and, when due, pushes the lease out. A body that cannot be built takes no
    number at all.
    """
    kind = JobKind(job.kind)
    counter = kind.numbered_by
    number = job.invc_no if counter == "invcNo" else job.sar_no
    body_text = job.body
    # A job found in_flight was being sent by a worker that died: it may have reached KRA.
    maybe_recorded = bool(job.maybe_recorded) or job.state == JobState.IN_FLIGHT.value
    values: dict[str, Any] = {}
    take: str | None = None
    if body_text is None:
        if counter is not None and number is None:
            take, number = counter, head.next_numbers[counter]
            values["invc_no" if counter == "invcNo" else "sar_no"] = number
        inputs = _BodyInputs.read(conn, lease, job, kind)
        try:
            body_text = dumps_body(_build_body(job, kind, number, inputs, ctx))
        except Exception as exc:
            # The job's own data cannot make a body (a rate or scheme changed since enqueue, a
            # stock master with no balance, a bug): dead with the reason, never an exception
            # that would roll back the previous job's result committed with this step.
            message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            return _LocalFailure(job, None, message)
        values["body"] = body_text
    attempt = int(job.attempts) + 1
    values.update(
        state=JobState.IN_FLIGHT.value,
        attempts=attempt,
        maybe_recorded=maybe_recorded,
        updated_at=now,
    )
    extend = renewal.due(now)
    lease_until = now + ctx.settings.drain.lease_ttl_s if extend else None
    branch = None
    if extend or take is not None:
        branch = q.BranchWrite(lease_until, take, number if take is not None else None)
    q.update_job_fenced(conn, lease, job.id, values, branch=branch)
    if extend:
        renewal.extended_at = now
    return _Send(job, loads_payload(body_text), body_text, number, attempt, maybe_recorded)


@dataclass(frozen=True, slots=True)
class _LocalFailure:
    """The body could not be built (e.g. no stock balance for a stock master): dead, no call."""

    job: Any
    number: int | None
    message: str


@dataclass(frozen=True, slots=True)
class _BodyInputs:
    """What a body needs from the database, read before the (pure) build so that a database
    error stays a database error and never passes for bad job data."""

    payload: dict[str, Any]
    org_invc_no: int | None
    rsd_qty: Decimal | None

    @classmethod
    def read(cls, conn: Connection, lease: Lease, job: Any, kind: JobKind) -> _BodyInputs:
        payload = loads_payload(job.payload)
        org_invc_no = None
        if kind is JobKind.CREDIT_NOTE and job.original_job_id is not None:
            org_invc_no = q.job_invc_no(conn, job.original_job_id)
        rsd_qty = None
        if kind is JobKind.STOCK_MASTER and payload.get("rsdQty") is None:
            rsd_qty = q.stock_balance(conn, lease.branch_id, str(payload.get("itemCd")))
        return cls(payload, org_invc_no, rsd_qty)


def _build_body(
    job: Any, kind: JobKind, number: int | None, inputs: _BodyInputs, ctx: DrainContext
) -> dict[str, Any]:
    return complete_body(
        kind,
        inputs.payload,
        tin=job.tin,
        bhf_id=job.bhf_id,
        number=number,
        org_invc_no=inputs.org_invc_no,
        rsd_qty=inputs.rsd_qty,
        registrant=ctx.registrant,
        scheme=VatScheme(ctx.settings.vat_scheme),
        rates=ctx.settings.tax_rates,
    )


# --------------------------------------------------------------------------- send + record


Then = Callable[
    [Connection, Lease, DrainContext, set[int], q.BranchHead | None], tuple[Any, int | None]
]


def _send_and_record(
    conn: Connection,
    lease: Lease,
    step: Any,
    ctx: DrainContext,
    woken: set[int],
    then: Then | None = None,
) -> tuple[Decision, tuple[Any, int | None] | None]:
    """Send one job and record its result; ``then`` runs in the same transaction."""
    job = step.job
    kind = JobKind(job.kind)
    if isinstance(step, _LocalFailure):
        outcome = CallOutcome(
            OutcomeKind.REJECTED, kind.endpoint, "LOCAL", step.message, may_have_reached_kra=False
        )
        dead = Dead("LOCAL", step.message, True)
        return _record(conn, lease, step, None, outcome, dead, ctx, woken, then=then)
    try:
        device = ctx.devices.get(job.tin, job.bhf_id)
    except DeviceNotInitialised as exc:
        outcome = CallOutcome(
            OutcomeKind.AUTH, kind.endpoint, "DEVICE", str(exc), may_have_reached_kra=False
        )
        decision: Decision = Park(str(exc), release_number=not step.maybe_recorded)
        return _record(conn, lease, step, None, outcome, decision, ctx, woken, then=then)
    started = ctx.clock()
    outcome = ctx.client.call(
        kind.endpoint,
        step.body,
        device=device.credentials,
        write=True,
        encoded=step.body_text.encode(),
    )
    ctx.observer.call_finished(kind, outcome, job, step.attempt)
    if outcome.kind is OutcomeKind.AUTH:
        ctx.devices.forget(job.tin, job.bhf_id)
    maybe_recorded = step.maybe_recorded or (
        outcome.may_have_reached_kra and outcome.kind in _INCONCLUSIVE
    )
    decision = decide(
        kind,
        outcome,
        attempt=step.attempt,
        # Including this call: if it may have reached KRA, its number must never be released.
        maybe_recorded=maybe_recorded,
        number=step.number,
        retry=ctx.settings.retry,
        age_s=started - float(job.created_at),
    )
    step = dataclasses.replace(step, maybe_recorded=maybe_recorded)
    receipt: dict[str, Any] | None = None
    if isinstance(decision, Accept):
        receipt, decision = effects.receipt_for(kind, step, outcome, decision, device, ctx)
    return _record(conn, lease, step, device, outcome, decision, ctx, woken, receipt, started, then)


_INCONCLUSIVE = frozenset(
    {OutcomeKind.TRANSIENT, OutcomeKind.UNKNOWN, OutcomeKind.RATE_LIMITED, OutcomeKind.SEQUENCE}
)


def _record(
    conn: Connection,
    lease: Lease,
    step: Any,
    device: Device | None,
    outcome: CallOutcome,
    decision: Decision,
    ctx: DrainContext,
    woken: set[int],
    receipt: dict[str, Any] | None = None,
    started: float | None = None,
    then: Then | None = None,
) -> tuple[Decision, tuple[Any, int | None] | None]:
    """Attempt row, job state and side effects, atomic and fenced; then, in the same step,
    ``then`` (the next job's prepare) unless the branch just parked."""
    now = ctx.clock()
    job = step.job
    following: tuple[Any, int | None] | None = None
    attempt = None  # no call was made for a local failure or a missing device
    if not isinstance(step, _LocalFailure) and outcome.result_code != "DEVICE":
        attempt = effects.attempt_row(lease, step, outcome, started or now, ctx.worker_name)
    # A job's result is usually one statement (PostgreSQL): then no transaction is needed
    # around it and the next job's prepare, whose own writes are single statements too.
    single = effects.writes_one_statement(decision, job)
    head: q.BranchHead | None = None  # read along with an acceptance, for ``then``
    with hot.step(conn, single_statements=single):
        match decision:
            case Accept():
                accepted_woken, head = effects.accept(
                    conn, lease, step, outcome, receipt, device, ctx, now, attempt,
                    then_head=HEAD_WINDOW if then is not None else None,
                )  # fmt: skip
                woken |= accepted_woken
            case Retry():
                effects.retry(conn, lease, step, outcome, decision, now, attempt)
            case Dead():
                woken |= effects.dead(conn, lease, step, decision, now, attempt)
            case Park():
                effects.park(conn, lease, step, decision, now, attempt)
        if then is not None and not isinstance(decision, Park):
            following = then(conn, lease, ctx, woken, head)
    ctx.observer.job_decided(job, decision, outcome, now)
    return decision, following
