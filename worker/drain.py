"""drain(branch): send one branch's jobs to OSCU, one at a time, in order. No Celery here.

    take the branch lease (fencing token)
    loop, bounded by max_jobs and max_seconds:
        prepare  pick the head job (lowest seq still active) whose dependencies are accepted,
                 end it superseded instead if it is a stock master a later one makes moot
                 (worker/coalesce.py), else
                 allocate its invcNo/sarNo on first send, freeze its body, mark it in_flight
                 -- committed BEFORE the call
        send     one OSCU call (the client never raises; it returns a CallOutcome)
        record   attempt row + job state + side effects (stock balance, events, dependents)
                 -- atomic, fenced by the lease; then the next job's prepare

On PostgreSQL the usual job is one statement, atomic and fenced: its result (job, attempt,
event, stock), the next job's in_flight mark (with its number and the lease; the body was
built from the head read one statement earlier, and the statement re-checks in its own
snapshot that the job is still the branch's ready head), and the branch's next head read
along. When the re-check fails, the mark is not made and the next job takes a second
statement, as a job after a retry, a dead job or a wait does. They run in autocommit
(:func:`worker.outbox.hot.step`).
Anything that writes more than one statement (a dead job and its dependents, a park) is
one transaction, as is every step on SQLite.
    release the lease, leaving ``wake_after`` = when the branch is next due

A crash between prepare and record leaves the job ``in_flight``; the next lease holder treats
it as maybe-sent and resends the identical body, so a duplicate answer then means "ours".
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, Engine

from schemas.completion import Registrant, complete_body, dumps_body, loads_payload
from schemas.jobs import JobKind, JobState
from schemas.settings import Settings
from schemas.vat import VatScheme
from worker import coalesce, effects, recovery
from worker.decide import Accept, Dead, Decision, Park, Retry, decide
from worker.devices import Device, DeviceDirectory, DeviceNotInitialised, NoTaxRates
from worker.observe import DrainObserver
from worker.oscu.client import OscuClient
from worker.oscu.outcome import CallOutcome, OutcomeKind
from worker.outbox import hot
from worker.outbox import queries as q
from worker.outbox.queries import HOPELESS, Lease, LeaseLost
from worker.pull_forward import pull_forward
from worker.systemic import BRANCH

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
    #: the job after this one, as the head read that started this one showed it
    successor: _Successor | None = None


@dataclass(frozen=True, slots=True)
class _Successor:
    """The job after the one being sent, as the branch's last head read showed it: its
    in_flight mark may ride on the sent job's result statement (:class:`queries.NextStart`),
    which re-checks what this copy says."""

    job: Any
    #: (id, state) of the jobs it depends on, as read
    deps: list[tuple[int, str]]
    #: the branch's next numbers once the job being sent has taken its own
    next_numbers: Mapping[str, int]

    @classmethod
    def after(cls, head: q.BranchHead, job_id: int | None, took: str | None) -> _Successor | None:
        """The candidate that follows ``job_id`` in ``head`` (the first one if None)."""
        ids = [int(row.id) for row, _ in head.candidates]
        if job_id is None:
            index = 0
        elif job_id in ids:
            index = ids.index(job_id) + 1
        else:
            return None
        if index >= len(ids):
            return None
        numbers = dict(head.next_numbers)
        if took is not None:
            numbers[took] += 1
        row, deps = head.candidates[index]
        return cls(row, deps, numbers)

    def ready_after(self, accepted_id: int, now: float) -> bool:
        """Whether it can be started by the acceptance of ``accepted_id``: a first send, due,
        and with nothing else to wait for (the statement checks it all again)."""
        job = self.job
        if job.state != JobState.PENDING.value or job.body is not None or job.maybe_recorded:
            return False
        if job.next_attempt_at is not None and job.next_attempt_at > now:
            return False
        deps = [(d, JobState.ACCEPTED.value if d == accepted_id else s) for d, s in self.deps]
        return _dependencies_verdict(deps)[0] == "ready"


@dataclass(slots=True)
class _Balances:
    """The branch's stock balances as this drain knows them: each item read once, then kept
    up to date with the movements the drain records as accepted.

    Only the lease holder changes a branch's balances (the fenced acceptance of a stock
    movement), so while the drain holds the lease its copy is the table's, and a stock
    master's ``rsdQty`` needs no query of its own. Quantities have at most two decimals
    (``schemas.types.Qty``), the column's scale: the sums are exact.
    """

    branch_id: int
    known: dict[str, Decimal | None] = field(default_factory=dict)

    def get(
        self, conn: Connection, item_cd: str, plus: Mapping[str, Decimal] | None = None
    ) -> Decimal | None:
        """The balance, with ``plus`` (a movement being accepted in the same statement)."""
        if item_cd not in self.known:
            self.known[item_cd] = q.stock_balance(conn, self.branch_id, item_cd)
        value = self.known[item_cd]
        if plus and item_cd in plus:
            value = (value or Decimal(0)) + plus[item_cd]
        return value

    def apply(self, deltas: Mapping[str, Decimal]) -> None:
        """A movement was accepted: items not read yet are read from the table when needed."""
        for item_cd, delta in deltas.items():
            if item_cd in self.known:
                self.known[item_cd] = (self.known[item_cd] or Decimal(0)) + delta


@dataclass(slots=True)
class _Upcoming:
    """What the drain keeps between jobs to prepare the next one."""

    renewal: _Renewal
    balances: _Balances
    #: whether the next job's in_flight mark may ride on an acceptance (PostgreSQL)
    rides: bool

    def prepare(
        self,
        conn: Connection,
        lease: Lease,
        ctx: DrainContext,
        woken: set[int],
        head: q.BranchHead | None = None,
    ) -> tuple[Any, int | None]:
        return _prepare_in(conn, lease, ctx, woken, head, upcoming=self)


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
    upcoming = _Upcoming(
        _Renewal.for_lease(ctx.settings, ctx.clock()),
        _Balances(branch_id),
        rides=conn.dialect.name == "postgresql",
    )
    started, sent = ctx.clock(), 0
    woken: set[int] = set()
    status: Status = "idle"
    wake_after: float | None = None
    seen_next_seq: int | None = None
    try:
        step, seen_next_seq = _prepare(conn, lease, ctx, woken, upcoming)
        while True:
            if isinstance(step, _Idle):
                break
            if isinstance(step, _Wait):
                pause = step.until - ctx.clock()
                budget_left = started + limits.max_seconds - ctx.clock()
                if step.inline and pause <= limits.inline_wait_s and pause < budget_left:
                    ctx.sleep(max(pause, 0.0))
                    step, seen_next_seq = _prepare(conn, lease, ctx, woken, upcoming)
                    continue
                status, wake_after = "waiting", step.until
                break
            within_budget = (
                sent + 1 < limits.max_jobs and ctx.clock() - started < limits.max_seconds
            )
            # One step per job: this job's result, then the next job's start (the next head
            # is prepared inside the record step).
            then = upcoming if within_budget else None
            decision, following = _send_and_record(conn, lease, step, ctx, woken, then)
            sent += 1
            if isinstance(decision, Accept) and step.job.state in _BACKING_OFF:
                _kra_is_back(conn, ctx)
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


#: A job read in one of these states had failed before: its acceptance means KRA is back.
_BACKING_OFF = frozenset({JobState.RETRY_WAIT.value, JobState.UNKNOWN.value})


def _kra_is_back(conn: Connection, ctx: DrainContext) -> None:
    """A job that had been failing was accepted: other branches backing off after the same
    outage are due again within seconds, not at the end of their backoff."""
    with conn.begin():
        moved = pull_forward(conn, ctx.clock(), spread_s=ctx.settings.retry.recovery_spread_s)
    if moved:
        log.info("KRA answers again: %d waiting job(s) pulled forward", moved)


def _release_quietly(lease: Lease, ctx: DrainContext) -> None:
    try:
        with ctx.engine.begin() as conn:
            q.release_lease(conn, lease, wake_after=ctx.clock(), seen_next_seq=None)
    except Exception:  # the lease will expire on its own
        log.exception("branch %s: could not release the lease after an error", lease.branch_id)


# --------------------------------------------------------------------------- prepare


def _prepare(
    conn: Connection, lease: Lease, ctx: DrainContext, woken: set[int], upcoming: _Upcoming
) -> tuple[Any, int | None]:
    """Pick the head and make it ready to send, committed before the call.

    Its writes are single fenced statements (the in_flight mark with the number and the
    lease), so on PostgreSQL it needs no transaction; blocking a hopeless head takes one.
    """
    with hot.step(conn, single_statements=True):
        return upcoming.prepare(conn, lease, ctx, woken)


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
    upcoming: _Upcoming,
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
            later = coalesce.supersede_head(conn, lease, job, ctx.settings.coalesce, now)
            if later is not None:  # a later stock master carries its balance: no call
                ctx.observer.job_superseded(job, later, now)
                continue
            try:
                return _start(conn, lease, job, head, ctx, now, upcoming), head.next_seq
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
    if any(state not in _SATISFIED for _, state in deps):
        return "waiting", 0
    return "ready", 0


#: A dependency in one of these states lets its dependent go. Superseded counts: a stock
#: master with a dependent is never superseded, so only a job enqueued after the fact can
#: name one, and in its branch it comes after the superseding job (worker/coalesce.py).
_SATISFIED = frozenset({JobState.ACCEPTED.value, JobState.SUPERSEDED.value})


def _start(
    conn: Connection,
    lease: Lease,
    job: Any,
    head: q.BranchHead,
    ctx: DrainContext,
    now: float,
    upcoming: _Upcoming,
) -> Any:
    """Freeze the body (taking the KRA number on first send) and mark it in_flight.

    The number is the branch's next as the head query read it: the body is built with it
    first, then one fenced write takes it (compare-and-set), stores the body, marks the job
    in_flight and, when due, pushes the lease out. A body that cannot be built takes no
    number at all.
    """
    planned = _plan_start(conn, lease, job, head.next_numbers, ctx, now, upcoming)
    if isinstance(planned, _LocalFailure):
        return planned
    q.update_job_fenced(conn, lease, job.id, planned.values, branch=planned.branch)
    return planned.made(upcoming, now, _Successor.after(head, int(job.id), planned.took))


@dataclass(frozen=True, slots=True)
class _Planned:
    """A job's in_flight mark, ready to write: the send it leads to once written."""

    send: _Send
    values: dict[str, Any]
    branch: q.BranchWrite | None
    took: str | None
    extends_lease: bool

    def next_start(self) -> q.NextStart:
        """This mark, to ride on the previous job's result statement."""
        return q.NextStart(int(self.send.job.id), self.values, self.branch)

    def rode(self, upcoming: _Upcoming, now: float, head: q.BranchHead) -> tuple[_Send, int]:
        """The mark rode on the previous job's result statement, which read ``head`` along
        (this job and the one before left out): the send, and the branch's next seq."""
        return self.made(upcoming, now, _Successor.after(head, None, self.took)), head.next_seq

    def made(self, upcoming: _Upcoming, now: float, successor: _Successor | None) -> _Send:
        """The mark was written."""
        if self.extends_lease:
            upcoming.renewal.extended_at = now
        return dataclasses.replace(self.send, successor=successor)


def _plan_start(
    conn: Connection,
    lease: Lease,
    job: Any,
    next_numbers: Mapping[str, int],
    ctx: DrainContext,
    now: float,
    upcoming: _Upcoming,
    stock_plus: Mapping[str, Decimal] | None = None,
) -> _Planned | _LocalFailure:
    """Build the body and the in_flight mark of ``job``; write nothing.

    ``stock_plus``: a movement accepted by the statement the mark will ride on, which a
    stock master's balance must include.
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
            take, number = counter, next_numbers[counter]
            values["invc_no" if counter == "invcNo" else "sar_no"] = number
        inputs = _BodyInputs.read(conn, lease, job, kind, upcoming.balances, stock_plus)
        try:
            rates = _rates(conn, job, kind, ctx)
        except (DeviceNotInitialised, NoTaxRates) as exc:
            # No rates to compute with: the branch waits (parked) for a device or a codes
            # sync, which unpark it; nothing was taken or written for this job.
            return _LocalFailure(job, None, str(exc), park=True)
        try:
            body_text = dumps_body(_build_body(job, kind, number, inputs, ctx, rates))
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
    extend = upcoming.renewal.due(now)
    lease_until = now + ctx.settings.drain.lease_ttl_s if extend else None
    branch = None
    if extend or take is not None:
        branch = q.BranchWrite(lease_until, take, number if take is not None else None)
    send = _Send(job, loads_payload(body_text), body_text, number, attempt, maybe_recorded)
    return _Planned(send, values, branch, take, extend)


@dataclass(frozen=True, slots=True)
class _LocalFailure:
    """The body could not be built (e.g. no stock balance for a stock master): dead, no call."""

    job: Any
    number: int | None
    message: str
    #: the branch waits for an operator (no device, no tax rates) instead of the job dying
    park: bool = False


@dataclass(frozen=True, slots=True)
class _BodyInputs:
    """What a body needs from the database, read before the (pure) build so that a database
    error stays a database error and never passes for bad job data."""

    payload: dict[str, Any]
    org_invc_no: int | None
    rsd_qty: Decimal | None

    @classmethod
    def read(
        cls,
        conn: Connection,
        lease: Lease,
        job: Any,
        kind: JobKind,
        balances: _Balances,
        stock_plus: Mapping[str, Decimal] | None = None,
    ) -> _BodyInputs:
        payload = loads_payload(job.payload)
        org_invc_no = None
        if kind is JobKind.CREDIT_NOTE and job.original_job_id is not None:
            org_invc_no = q.job_invc_no(conn, job.original_job_id)
        rsd_qty = None
        if kind is JobKind.STOCK_MASTER and payload.get("rsdQty") is None:
            rsd_qty = balances.get(conn, str(payload.get("itemCd")), stock_plus)
        return cls(payload, org_invc_no, rsd_qty)


#: Kinds whose amounts are computed with the branch's tax rates.
_RATED_KINDS = frozenset({JobKind.SALE, JobKind.CREDIT_NOTE, JobKind.STOCK_IO})


def _rates(
    conn: Connection, job: Any, kind: JobKind, ctx: DrainContext
) -> Mapping[str, Decimal] | None:
    """The rates the body is frozen with: ETIMS_TAX_RATES if set, else KRA's for the branch
    (cached with the device). Raises DeviceNotInitialised or NoTaxRates."""
    if kind not in _RATED_KINDS:
        return None
    return ctx.devices.tax_rates(job.tin, job.bhf_id, ctx.settings.tax_rates, conn)


def _build_body(
    job: Any,
    kind: JobKind,
    number: int | None,
    inputs: _BodyInputs,
    ctx: DrainContext,
    rates: Mapping[str, Decimal] | None,
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
        rates=rates,
    )


# --------------------------------------------------------------------------- send + record


def _send_and_record(
    conn: Connection,
    lease: Lease,
    step: Any,
    ctx: DrainContext,
    woken: set[int],
    then: _Upcoming | None = None,
) -> tuple[Decision, tuple[Any, int | None] | None]:
    """Send one job and record its result; ``then`` runs in the same transaction."""
    job = step.job
    kind = JobKind(job.kind)
    if isinstance(step, _LocalFailure):
        if step.park:
            outcome = CallOutcome(
                OutcomeKind.AUTH, kind.endpoint, "DEVICE", step.message, may_have_reached_kra=False
            )
            parked = Park(step.message, release_number=True)
            return _record(conn, lease, step, None, outcome, parked, ctx, woken, then=then)
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
    elif outcome.ok:
        ctx.devices.key_worked(job.tin, job.bhf_id)  # a write at most once a minute
    maybe_recorded = step.maybe_recorded or (
        outcome.may_have_reached_kra and outcome.kind in _INCONCLUSIVE
    )
    verdict = decide(
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
    if isinstance(verdict, Accept):
        decision = verdict
        receipt = effects.receipt_for(outcome, kind)
    else:  # rare: may ask KRA what it holds under the number before deciding
        receipt, decision = recovery.resolve(conn, kind, step, verdict, device, ctx)
        if isinstance(decision, Park):  # name the branch in the command the reason gives
            branch = f"{job.tin}/{job.bhf_id}"
            decision = dataclasses.replace(decision, reason=decision.reason.replace(BRANCH, branch))
    return _record(conn, lease, step, device, outcome, decision, ctx, woken, receipt, started, then)


#: Answers that leave it open whether this call reached KRA. A refusal (910, 90x, 922, a
#: duplicate) is KRA's answer to this very call: it did not record it.
_INCONCLUSIVE = frozenset({OutcomeKind.TRANSIENT, OutcomeKind.UNKNOWN, OutcomeKind.RATE_LIMITED})


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
    then: _Upcoming | None = None,
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
                stock = effects.stock_deltas(step.body) if job.kind == JobKind.STOCK_IO else {}
                riding = _riding_start(conn, lease, step, ctx, now, then, single, stock)
                accepted_woken, head = effects.accept(
                    conn, lease, step, outcome, receipt, device, ctx, now, attempt, stock,
                    then_head=HEAD_WINDOW if then is not None else None,
                    then_start=riding.next_start() if riding is not None else None,
                )  # fmt: skip
                woken |= accepted_woken
                if then is not None:
                    then.balances.apply(stock)
                    if riding is not None and head is not None:  # else: the mark was not made
                        following = riding.rode(then, now, head)
            case Retry():
                effects.retry(conn, lease, step, outcome, decision, now, attempt)
            case Dead():
                woken |= effects.dead(conn, lease, step, decision, now, attempt)
            case Park():
                effects.park(conn, lease, step, decision, now, attempt)
        if then is not None and not isinstance(decision, Park) and following is None:
            following = then.prepare(conn, lease, ctx, woken, head)
    ctx.observer.job_decided(job, decision, outcome, now)
    return decision, following


def _riding_start(
    conn: Connection,
    lease: Lease,
    step: Any,
    ctx: DrainContext,
    now: float,
    then: _Upcoming | None,
    single: bool,
    stock: Mapping[str, Decimal],
) -> _Planned | None:
    """The next job's in_flight mark, to ride on this acceptance's statement, if it can.

    It can when the acceptance is one statement that goes on to the next job, the head read
    that started this job showed the next one, and that one is a first send with nothing
    left to wait for but this job. Anything else (a resend, a wait, a body that cannot be
    built) goes the usual way: the next prepare reads the branch again.
    """
    if then is None or not then.rides or not single or not isinstance(step, _Send):
        return None
    successor = step.successor
    if successor is None or not successor.ready_after(int(step.job.id), now):
        return None
    if coalesce.carrier(conn, lease.branch_id, successor.job, ctx.settings.coalesce) is not None:
        return None  # a later stock master carries it: the prepare step supersedes it
    planned = _plan_start(
        conn, lease, successor.job, successor.next_numbers, ctx, now, then, stock_plus=stock
    )
    return planned if isinstance(planned, _Planned) else None
