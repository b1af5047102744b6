"""drain(branch): send one branch's jobs to OSCU, one at a time, in order. No Celery here.

    lease     take the branch (fencing token); every later write is fenced by it
    loop, bounded by max_jobs and max_seconds:
      prepare   read the head; choose the job to send (:func:`choose`); on its first send
                take its invcNo/sarNo and freeze its body; mark it in_flight -- committed
                before the call, and only if the job, the counter and the lease are still
                as read (an operator may act in between: then read again)
      send      one OSCU call (the client never raises; it returns a CallOutcome)
      recover   only when decide() asks to verify: what KRA holds under the number
      record    attempt row + job state + what follows (stock, event, dependents, a park),
                atomic and fenced by the lease
    release   give the branch back, leaving ``wake_after`` = when the sweeper is to wake
              it: when it is next due, or (out of budget, its task wakes it at once) only
              once a lost wake would show

The fused step: when a job is accepted and the head read that started it also showed the
job after it, ready once this one is accepted, the drain plans that job's start from what it
already knows (:func:`_plan_next`: the same :func:`choose`, the body built as ``_start``
builds it, the number the counter gives after this job) and the record writes it along with
the acceptance (``JobRecord.then``; one statement on PostgreSQL). The next loop then goes
straight to the call. It is planned only when nothing of it depends on this job's effects
(not a stock master whose ``rsdQty`` the relay computes, which is also the only kind that
coalescing may supersede), only while the drain's budget leaves room for the call, and the
start keeps every guard of a plain one, plus what a fresh head read would show (no active job
ahead of it: one may have been unblocked meanwhile). Refused (an operator acted, the lease
ran out, a job was unblocked ahead of it), the acceptance stands and the next loop prepares
the head the usual way. Anything unusual (a block, a wait, a body that cannot be built, a
superseded stock master) is left to :func:`_prepare`, the one path that handles it.

A crash after a record that started the next job leaves that job ``in_flight`` and never
sent: as below, the next holder resends its stored body.

Each step borrows a database connection for its own short transaction and gives it back
(:mod:`worker.outbox.branch_store`): no connection is held while KRA answers.

A crash between prepare and record leaves the job ``in_flight``; the next lease holder treats
it as maybe-sent and resends the identical body, so a duplicate answer then means "ours".
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy.exc import TimeoutError as PoolTimeout

from schemas.completion import Registrant, complete_body, dumps_body, loads_payload
from schemas.jobs import JobKind, JobState
from schemas.settings import CoalesceSettings, Settings
from schemas.vat import VatScheme
from worker import coalesce, defer, effects, recovery, stock_merge
from worker.decide import Accept, Dead, Decision, Park, decide
from worker.devices import DeviceDirectory, DeviceNotInitialised, NoTaxRates
from worker.observe import DrainObserver
from worker.oscu.client import OscuClient
from worker.oscu.outcome import CallOutcome, OutcomeKind
from worker.outbox.branch_store import BranchStore
from worker.outbox.rows import (
    HOPELESS,
    SATISFIED,
    BranchHead,
    Dependency,
    HeadJob,
    HeadMoved,
    Lease,
    LeaseLost,
    StockOutDeferral,
)
from worker.outbox.writes import JobRecord, Number, Recorded, Start
from worker.steps import Called, LocalFailure, Send, Verdict
from worker.sweep import RESWEEP_AFTER_S
from worker.systemic import BRANCH

log = logging.getLogger("etims_relay.drain")

#: A head waiting for a dependency in another branch is looked at again after this long at
#: the latest; normally the dependency's acceptance wakes the branch at once.
DEPENDENCY_WAIT_S = 5.0
#: OSCU round trips one job may take at most (write, its 401 re-send, receipt lookup), plus
#: one for the token fetch between them.
ROUND_TRIPS_PER_JOB = 4
#: A result that found the pool empty is written again after this pause, doubling up to
#: :data:`RECORD_RETRY_MAX_S`, for as long as the lease holds.
RECORD_RETRY_FIRST_S = 0.2
RECORD_RETRY_MAX_S = 5.0

Status = Literal["busy", "idle", "waiting", "more", "parked", "lease_lost"]


@dataclass
class DrainContext:
    """What a drain needs; built once per worker process and shared by its threads."""

    #: the outbox's steps (:func:`worker.outbox.branch_store.branch_store`): one per process,
    #: since the PostgreSQL store compiles every statement when it is built
    store: BranchStore
    client: OscuClient
    devices: DeviceDirectory
    settings: Settings
    observer: DrainObserver = field(default_factory=DrainObserver)
    worker_name: str = "worker"
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    #: draws each drain's time budget (:func:`_time_budget`); tests seed it
    rng: random.Random = field(default_factory=random.Random)

    @property
    def registrant(self) -> Registrant:
        return Registrant(self.settings.registrant_id, self.settings.registrant_name)

    @property
    def recorder(self) -> effects.Recorder:
        url = self.settings.oscu_url
        return effects.Recorder(self.worker_name, "-sbx." in url or "sbx.kra" in url)


@dataclass(frozen=True, slots=True)
class DrainReport:
    branch_id: int
    status: Status
    sent: int = 0
    #: seconds until the branch is due again (for a short Celery countdown), if known
    due_in_s: float | None = None
    #: other branches whose jobs this drain unblocked: wake them
    woken: frozenset[int] = frozenset()


def drain(branch_id: int, ctx: DrainContext) -> DrainReport:
    """Send the branch's due jobs in order until done, waiting, or out of budget."""
    store = ctx.store
    owner = f"{ctx.worker_name}:{uuid.uuid4().hex[:12]}"
    claimed_at = ctx.clock()  # the lease runs out ttl after this, however long the claim took
    lease = store.claim(branch_id, owner, claimed_at, ctx.settings.drain.lease_ttl_s)
    if lease is None:
        return DrainReport(branch_id, "busy")
    ctx.observer.lease_taken(branch_id)
    try:
        run = _send_jobs(lease, ctx, claimed_at)
    except LeaseLost:  # a write outside the loop's own steps; the loop reports its own
        run = _Run("lease_lost", 0, frozenset(), None)
    except PoolTimeout:
        # The pool itself is the error: a release would queue for it once more (up to the
        # pool timeout again) and most likely fail the same way. The lease runs out on its
        # own; the task wakes the branch again.
        raise
    except Exception:
        # A database or programming error: hand the branch back now rather than at lease
        # expiry (due now, so the sweeper retries it), then let the task fail.
        _release_quietly(lease, ctx)
        raise
    if run.status == "lease_lost":
        # Another worker holds the branch now: no release. What this drain sent and the
        # branches it unblocked before that still count (the task wakes those).
        ctx.observer.lease_lost(branch_id)
        return DrainReport(branch_id, "lease_lost", run.sent, 0.0, run.woken)
    if run.status == "more":
        # Out of budget with work left, the task wakes the branch at once (a broker message),
        # and that wake finds whatever was enqueued meanwhile as well. The sweeper is the
        # message's backup, not a second wake beside it: the branch is due to it only once a
        # lost message would show, whatever was enqueued. (Duplicates, each a task that finds
        # the branch busy, queued ahead of the real wakes: bench/README.md, 2026-12-05,
        # 12:00-12:52.)
        store.release(lease, ctx.clock() + RESWEEP_AFTER_S, None)
        return DrainReport(branch_id, "more", run.sent, 0.0, run.woken)
    released = store.release(lease, run.wake_after, run.seen_next_seq)
    if not released and run.status in ("idle", "waiting"):
        # a job was enqueued since the head read: due now, as enqueue left it
        return DrainReport(branch_id, "more", run.sent, 0.0, run.woken)
    due_in = None if run.wake_after is None else max(0.0, run.wake_after - ctx.clock())
    return DrainReport(branch_id, run.status, run.sent, due_in, run.woken)


@dataclass(frozen=True, slots=True)
class _Run:
    """How a drain's loop ended."""

    status: Status
    sent: int
    woken: frozenset[int]
    #: the branch's next_seq as last read: a job enqueued since keeps the branch due
    #: (None: not read, or the lease was lost)
    seen_next_seq: int | None
    wake_after: float | None = None


def _send_jobs(lease: Lease, ctx: DrainContext, claimed_at: float) -> _Run:
    """The loop: prepare -> send -> (recover) -> record, one job at a time."""
    limits = ctx.settings.drain
    started = ctx.clock()
    seconds = _time_budget(limits.max_seconds, ctx.rng)
    renewal = _Renewal.for_lease(ctx.settings, claimed_at)
    sent, woken = 0, frozenset[int]()
    head: BranchHead | None = None  # as the last record step read it along, if it did
    rode: _Prepared | None = None  # the next job's start, when it rode on the last record

    def within_budget(jobs: int) -> bool:
        return jobs < limits.max_jobs and ctx.clock() - started < seconds

    while True:
        prepared = rode or _prepare(lease, ctx, renewal, head)
        rode, head = None, None
        woken |= prepared.woken
        step, seen = prepared.step, prepared.next_seq
        if isinstance(step, _LeaseGone):
            return _Run("lease_lost", sent, woken, None)
        if isinstance(step, _Idle):
            return _Run("idle", sent, woken, seen)
        if isinstance(step, _Wait):
            pause = step.until - ctx.clock()
            budget_left = started + seconds - ctx.clock()
            if step.inline and pause <= limits.inline_wait_s and pause < budget_left:
                ctx.sleep(max(pause, 0.0))
                continue
            return _Run("waiting", sent, woken, seen, step.until)
        if isinstance(step, Send):
            renewal = renewal.after(step)
        verdict = _branch_named(_send(step, ctx))
        # a start rides on this record only if the budget leaves room for its call
        plan = (
            _plan_next(lease, prepared, verdict, ctx, renewal) if within_budget(sent + 1) else None
        )
        now = ctx.clock()
        then = None if plan is None else _NextStart(plan, now, renewal.lease_until(now))
        record = effects.record_of(verdict, now, ctx.recorder)
        try:
            recorded = _record(lease, _with_next(record, then), ctx, renewal)
        except LeaseLost:
            return _Run("lease_lost", sent, woken, seen)
        ctx.observer.job_decided(verdict.job, verdict.decision, verdict.outcome, now)
        if recorded.members:  # a merged send ended: so did the stock-outs it carried
            ctx.observer.members_ended(verdict.job, recorded.members, verdict.decision, now)
        sent, woken = sent + 1, woken | recorded.woken
        # a refused start: read the head again (the operator's change is in it)
        rode = None if then is None else then.rode(recorded)
        head = recorded.head if then is None else None
        if isinstance(verdict.decision, Accept) and verdict.job.state in _BACKING_OFF:
            _kra_is_back(ctx)
        if isinstance(verdict.decision, Park):
            return _Run("parked", sent, woken, seen)
        if rode is None and not within_budget(sent):
            return _Run("more", sent, woken, seen)


def _time_budget(max_seconds: float, rng: random.Random) -> float:
    """This drain's time budget: between half and all of ``max_seconds``, drawn per drain.

    Drains that start together (a worker restart, KRA back after an outage: every branch has
    a backlog) would otherwise end together, every ``max_seconds``, and hundreds of re-wakes,
    lease claims and head reads would queue at once for the broker, the pool and the
    interpreter lock while no call is in flight (at 1 s round trips, 256 branches on one
    process, all of them ending at once every 20 s held the rate near 0.75 of the ideal;
    bench/README.md). A drawn budget spreads the ends out and keeps them spread, at the cost
    of a few more drain ends.
    Only time is drawn: at short round trips, where ``max_jobs`` binds first, the call
    times themselves spread the drains out.
    """
    return max_seconds * rng.uniform(0.5, 1.0)


def _branch_named(verdict: Verdict) -> Verdict:
    """A park's reason with the branch filled in (decide() knows no branch and leaves a
    placeholder), once, for the log line and the branch's parked_reason alike."""
    decision, job = verdict.decision, verdict.job
    if not isinstance(decision, Park) or BRANCH not in decision.reason:
        return verdict
    named = dataclasses.replace(
        decision, reason=decision.reason.replace(BRANCH, f"{job.tin}/{job.bhf_id}")
    )
    return dataclasses.replace(verdict, decision=named)


def _record(lease: Lease, record: JobRecord, ctx: DrainContext, renewal: _Renewal) -> Recorded:
    """Write a job's result. KRA has answered by now: a pool with no free connection is
    waited out while the lease holds (the writes are fenced by it either way), so a busy pool
    does not throw the answer away. Only then does the error go up: the job stays in_flight
    and the next holder resends its identical body (a duplicate then means "ours")."""
    pause = RECORD_RETRY_FIRST_S
    while True:
        try:
            return ctx.store.record(lease, record)
        except PoolTimeout:
            if ctx.clock() + pause >= renewal.expires_at:
                raise
            log.warning(
                "branch %s: no database connection to record job %s; trying again in %.1f s",
                lease.branch_id, record.job.id, pause,
                extra={"event": "record_pool_timeout", "branch_id": lease.branch_id},
            )  # fmt: skip
            ctx.sleep(pause)
            pause = min(2 * pause, RECORD_RETRY_MAX_S)
            if record.then is not None:
                # a next start planned for the first try's time is not written late: the
                # next loop prepares that job the usual way
                record = dataclasses.replace(record, then=None)


#: A job read in one of these states had failed before: its acceptance means KRA is back.
_BACKING_OFF = frozenset({JobState.RETRY_WAIT, JobState.UNKNOWN})


def _kra_is_back(ctx: DrainContext) -> None:
    """A job that had been failing was accepted: other branches backing off after the same
    outage are due again within seconds, not at the end of their backoff."""
    moved = ctx.store.pull_forward(ctx.clock(), ctx.settings.retry.recovery_spread_s)
    if moved:
        log.info("KRA answers again: %d waiting job(s) pulled forward", moved)


def _release_quietly(lease: Lease, ctx: DrainContext) -> None:
    try:
        ctx.store.release(lease, ctx.clock(), None)
    except Exception:  # the lease will expire on its own
        log.exception("branch %s: could not release the lease after an error", lease.branch_id)


# --------------------------------------------------------------------------- prepare


@dataclass(frozen=True, slots=True)
class _Wait:
    until: float
    #: Worth sleeping through inside the drain if short (a retry); a dependency in another
    #: branch is not: its acceptance wakes this branch.
    inline: bool = True


@dataclass(frozen=True, slots=True)
class _Idle:
    pass


@dataclass(frozen=True, slots=True)
class _LeaseGone:
    """Another worker took the branch over while this drain prepared its head."""


@dataclass(frozen=True, slots=True)
class _Blocked:
    """The job depends on one that can never be accepted without an operator."""

    job: HeadJob
    blocked_by: int


@dataclass(frozen=True, slots=True)
class _Ready:
    job: HeadJob
    #: the read the job comes from, when it is not the head (a sale passing a deferred
    #: stock-out): its counters are the ones the job's number is taken from
    read: BranchHead | None = None


@dataclass(frozen=True, slots=True)
class _Prepared:
    step: Send | LocalFailure | _Wait | _Idle | _LeaseGone
    #: the branch's next_seq from the head read it came from (None: lease lost)
    next_seq: int | None
    #: branches whose jobs blocking a head blocked too
    woken: frozenset[int] = frozenset()
    #: a Send's: the head read it was started from (the next job's start is planned from it)
    head: BranchHead | None = None


def choose(
    head: BranchHead, now: float, deferral: Deferral | None = None
) -> _Ready | _Blocked | _Wait | _Idle:
    """What to do with the branch's head: send it, block it, wait, or nothing to do.

    The one place that decides which job goes next (a job is never sent before the jobs
    ahead of it in its branch, nor before what it depends on). A further verdict for the
    head (e.g. a stock master that a later one for the same item supersedes) is one more
    case here and one more store write in :func:`_prepare`, as :class:`_Blocked` is.

    The one exception to "the head goes first": a never-sent stock-out at a ready head may
    let a later sale go before it, within bounds (:mod:`worker.defer`); ``deferral`` is what
    the branch said about that, read only for such a head."""
    if not head.jobs:
        return _Idle()
    job = head.jobs[0]
    for dependency in job.dependencies:
        if dependency.state in HOPELESS:
            return _Blocked(job, dependency.job_id)
    if any(d.state not in SATISFIED for d in job.dependencies):
        return _Wait(now + DEPENDENCY_WAIT_S, inline=False)
    if job.next_attempt_at is not None and job.next_attempt_at > now:
        return _Wait(job.next_attempt_at)
    if deferral is not None and deferral.head_id == job.id:
        sale = defer.passer(job, deferral.facts, now, deferral.settings)
        if sale is not None:
            return _Ready(sale, deferral.facts.past)
    return _Ready(job)


@dataclass(frozen=True, slots=True)
class Deferral:
    """What the branch said past a deferrable head, for :func:`choose`."""

    head_id: int
    facts: StockOutDeferral
    settings: CoalesceSettings


def _prepare(
    lease: Lease, ctx: DrainContext, renewal: _Renewal, head: BranchHead | None
) -> _Prepared:
    """Make the head job ready to send, committed before the call. ``head``: the branch's
    head as the previous job's record step read it along (else it is read here)."""
    woken = frozenset[int]()
    try:
        while True:
            now = ctx.clock()
            head = head or ctx.store.read_head(lease)
            match choose(head, now, _deferral(lease, head, ctx)):
                case _Blocked(job, blocked_by):
                    try:
                        woken |= ctx.store.block(lease, job, blocked_by, now)
                    except HeadMoved:  # an operator skipped it since the read: read again
                        log.info("branch %s: head changed meanwhile; reading it again",
                                 lease.branch_id)  # fmt: skip
                    head = None
                case _Ready(job, read):
                    try:
                        if (later := _superseding(lease, job, ctx)) is not None:
                            head = ctx.store.supersede(lease, job, later, now)
                            ctx.observer.job_superseded(job, later, now)
                            continue
                        carrier = _carrier(lease, job, ctx)
                        if read is None:  # the head goes: the next job may ride on it
                            step = _start(lease, carrier, head, ctx, renewal)
                            return _Prepared(step, head.next_seq, woken, head)
                        # a sale passing a deferred stock-out: the next job is chosen
                        # afresh, bounds and all
                        step = _start(lease, carrier, read, ctx, renewal)
                        return _Prepared(step, read.next_seq, woken)
                    except HeadMoved:
                        # An operator skipped the job or set the branch's next number since
                        # the head was read; nothing was written. Read again, go on from there.
                        log.info("branch %s: head changed meanwhile; preparing again",
                                 lease.branch_id)  # fmt: skip
                        head = None
                case _Wait() | _Idle() as other:
                    return _Prepared(other, head.next_seq, woken)
    except LeaseLost:  # what blocking wrote before that still counts
        return _Prepared(_LeaseGone(), None, woken)


def _deferral(lease: Lease, head: BranchHead, ctx: DrainContext) -> Deferral | None:
    """What the branch says past its head, read only when the head is a never-sent
    stock-out that may wait behind later sales (:mod:`worker.defer`)."""
    settings = ctx.settings.coalesce
    if not head.jobs or not defer.may_defer(head.jobs[0], settings):
        return None
    job = head.jobs[0]
    return Deferral(job.id, ctx.store.sale_past_stock(lease, job), settings)


@dataclass(frozen=True, slots=True)
class _Carrier:
    """A stock-out about to go with the stock-outs its send carries."""

    #: the job as sent: ``merged`` names every member, ``payload`` is the merged one
    job: HeadJob
    #: members that join it with this start (a first start that merged)
    joining: tuple[int, ...] = ()
    #: the job as it would go alone (a first start that merged)
    alone: HeadJob | None = None

    def without_members(self) -> _Carrier | None:
        """The carrier going alone, when this start merged others into it."""
        return None if self.alone is None else _Carrier(self.alone)


def _carrier(lease: Lease, job: HeadJob, ctx: DrainContext) -> _Carrier:
    """A stock movement with the stock-outs that go inside its send (:mod:`worker.stock_merge`).

    Stock-outs are merged into a carrier only while it holds a frozen body: a resend (an
    unknown outcome, a crash) names exactly those, and its bytes are resent as they were. A
    carrier whose body is dropped (a park that rebuilds it, a ``set-next`` that takes its
    number back, a skip or replay) lets them go first (``dissolve_members``,
    ``queries.release_members``, ``worker.replay``; a first start releases any left over), so
    a first start finds none: with merging on
    it takes the ready stock-outs behind it (the same ones, when nothing else changed); with
    merging off it goes alone, and no merged stock-out is left behind. Every other job goes
    alone."""
    if job.kind is not JobKind.STOCK_IO:
        return _Carrier(job)
    if job.body is not None:  # a resend: read only on this rare path
        members = tuple(m.id for m in ctx.store.merged_members(lease, job))
        return _Carrier(dataclasses.replace(job, merged=members) if members else job)
    settings = ctx.settings.coalesce
    if not defer.merging_applies(job, settings):
        return _Carrier(job)
    sar_ty_cd = str(loads_payload(job.payload)["sarTyCd"])
    found = ctx.store.merge_candidates(lease, job, sar_ty_cd, settings.max_defer_jobs)
    joining = stock_merge.group(job.payload, found, settings.max_merged_lines)
    if not joining:
        return _Carrier(job)
    ids = tuple(m.id for m in joining)
    try:
        payload = stock_merge.merged_payload(job.payload, joining)
    except (ArithmeticError, LookupError, TypeError, ValueError):
        # a member's data cannot be added up: the carrier goes alone, the member in its turn
        log.warning("branch %s: stock-outs behind job %s cannot be merged; it goes alone",
                    lease.branch_id, job.id, exc_info=True)  # fmt: skip
        return _Carrier(job)
    log.info("branch %s: stock-out job %s carries %d more in one insertStockIO",
             lease.branch_id, job.id, len(ids),
             extra={"event": "stock_outs_merged", "branch_id": lease.branch_id})  # fmt: skip
    return _Carrier(dataclasses.replace(job, merged=ids, payload=payload), ids, job)


def _superseding(lease: Lease, job: HeadJob, ctx: DrainContext) -> int | None:
    """The later stock master that makes the ready head moot (:mod:`worker.coalesce`), if
    any; None: send it."""
    if not coalesce.may_be_superseded(job, ctx.settings.coalesce):
        return None
    item_cd = coalesce.computed_item(job.payload)
    if item_cd is None:
        return None
    return coalesce.superseder(ctx.store.stock_master_facts(lease, job, item_cd))


@dataclass(frozen=True, slots=True)
class _Renewal:
    """When the lease was last pushed out, and how often it must be.

    Every send leaves at least :data:`ROUND_TRIPS_PER_JOB` OSCU round trips (connect + read
    timeout each) on the lease: the most one job can take is its write, one re-send after a
    401 with a fresh token, and a receipt lookup. The extension rides on the job's in_flight
    write. With a TTL longer than the margin it is only written once the margin is being
    eaten into; with the default TTL, at every send. Writes are fenced by the token either
    way; this is what keeps a second worker from *sending* meanwhile.
    """

    extended_at: float
    every_s: float
    ttl_s: float

    @classmethod
    def for_lease(cls, settings: Settings, claimed_at: float) -> _Renewal:
        round_trip = settings.oscu.connect_timeout_s + settings.oscu.read_timeout_s
        margin = ROUND_TRIPS_PER_JOB * round_trip
        ttl = settings.drain.lease_ttl_s
        return cls(claimed_at, max(0.0, ttl - margin), ttl)

    @property
    def expires_at(self) -> float:
        """When the lease runs out unless a later start pushes it out."""
        return self.extended_at + self.ttl_s

    def due(self, now: float) -> bool:
        return now - self.extended_at >= self.every_s

    def lease_until(self, now: float) -> float | None:
        """What a start now pushes the lease out to, if it must."""
        return now + self.ttl_s if self.due(now) else None

    def after(self, send: Send) -> _Renewal:
        """The renewal once ``send`` was started (its start extended the lease if due)."""
        if send.lease_extended_at is not None:
            return _Renewal(send.lease_extended_at, self.every_s, self.ttl_s)
        return self


def _start(
    lease: Lease, carrier: _Carrier, head: BranchHead, ctx: DrainContext, renewal: _Renewal
) -> Send | LocalFailure:
    """Freeze the body (taking the KRA number on first send) and mark the job in_flight.

    The number is the branch's next as the head read showed it: the body is built with it
    first, then one fenced write takes it (compare-and-set), stores the body, marks the job
    in_flight and, when due, pushes the lease out. A body that cannot be built takes no
    number at all. A carrier's first start marks the stock-outs joining its send in the same
    write (all of them, or nothing).
    """
    planned = _plan_start(lease, carrier, head, ctx)
    alone = carrier.without_members()
    if isinstance(planned, LocalFailure) and not planned.park and alone is not None:
        # the merged body cannot be built (a member's bad data, or the carrier's own): the
        # carrier goes alone; a member with bad data dies alone in its turn, not the group
        log.warning("branch %s: merged stock movement of job %s cannot be built (%s); it "
                    "goes alone", lease.branch_id, carrier.job.id, planned.message)  # fmt: skip
        planned = _plan_start(lease, alone, head, ctx)
    if isinstance(planned, LocalFailure):
        return planned
    # The clock read after the body's reads (each may have waited for a pooled connection):
    # the lease is pushed out from, and checked against, the time of the write itself.
    now = ctx.clock()
    lease_until = renewal.lease_until(now)
    ctx.store.start(lease, planned.start(lease_until), now)
    return planned.send(None if lease_until is None else now)


@dataclass(frozen=True, slots=True)
class _Planned:
    """A job's start, built but not written yet: its body and the number it takes."""

    job: HeadJob
    #: the body the call sends: frozen now (``new_body``), or the stored one of a resend
    body_text: str
    new_body: str | None
    number: int | None
    takes: Number | None
    attempt: int
    maybe_recorded: bool
    #: the stock-outs a carrier's first start merges into its send (:func:`_carrier`)
    joining: tuple[int, ...] = ()

    def start(self, lease_until: float | None) -> Start:
        """The in_flight mark, compare-and-set on the job as the head read showed it."""
        job = self.job
        return Start(
            job_id=job.id,
            attempt=self.attempt,
            maybe_recorded=self.maybe_recorded,
            body=self.new_body,
            takes=self.takes,
            lease_until=lease_until,
            read_state=job.state,
            read_invc_no=job.invc_no,
            read_sar_no=job.sar_no,
            merges=self.joining,
        )

    def send(self, lease_extended_at: float | None) -> Send:
        """The call, once the mark is written."""
        return Send(
            self.job, loads_payload(self.body_text), self.body_text, self.number, self.attempt,
            self.maybe_recorded, lease_extended_at,
        )  # fmt: skip


def _plan_start(
    lease: Lease, carrier: _Carrier, head: BranchHead, ctx: DrainContext
) -> _Planned | LocalFailure:
    """The start of ``carrier``'s job with the numbers of ``head``; nothing written."""
    job = carrier.job
    counter = job.kind.numbered_by
    number = job.number
    takes: Number | None = None
    # A job found in_flight was being sent by a worker that died: it may have reached KRA.
    maybe_recorded = job.maybe_recorded or job.state == JobState.IN_FLIGHT
    body_text, new_body = job.body, None
    if body_text is None:
        if counter is not None and number is None:
            number = head.next_number(counter)
            takes = Number(counter, number)
        built = _build_body(lease, job, number, ctx)
        if isinstance(built, LocalFailure):
            return built
        body_text = new_body = built
    return _Planned(
        job, body_text, new_body, number, takes, job.attempts + 1, maybe_recorded,
        carrier.joining,
    )  # fmt: skip


# --------------------------------------------------------------------------- the fused step


def _plan_next(
    lease: Lease, prepared: _Prepared, verdict: Verdict, ctx: DrainContext, renewal: _Renewal
) -> _Planned | None:
    """The start of the job after an accepted one, to ride on its acceptance, if it is safe
    to plan without that acceptance's effects; None: the next loop prepares it.

    From the head read the accepted job was started from, without that job: the same
    :func:`choose` decides (a dependency on the accepted job counts as met), the body is
    built as ``_start`` builds it, with the number the counter gives after the accepted job.
    A body read (a credit note's original invcNo) reads nothing the acceptance changes.

    Nothing but the record may stand between KRA's answer and its record: any error while
    planning is logged and the record goes alone (the next prepare reads again and meets the
    error there, if it lasts); and nothing is planned once the lease is within one OSCU round
    trip of running out (the record must land while it holds).
    """
    send, head = prepared.step, prepared.head
    if not isinstance(verdict.decision, Accept) or not isinstance(send, Send) or head is None:
        return None
    if ctx.clock() >= renewal.expires_at - _round_trip_s(ctx.settings):
        return None
    try:
        after = _head_after(head, send)
        match choose(after, ctx.clock()):
            case _Ready(job) if _may_ride(job, ctx.settings.coalesce):
                planned = _plan_start(lease, _Carrier(job), after, ctx)
                return planned if isinstance(planned, _Planned) else None
    except Exception:
        log.exception("branch %s: could not plan the job after job %s; recording it alone",
                      lease.branch_id, send.job.id)  # fmt: skip
    return None


def _round_trip_s(settings: Settings) -> float:
    return settings.oscu.connect_timeout_s + settings.oscu.read_timeout_s


def _head_after(head: BranchHead, accepted: Send) -> BranchHead:
    """``head`` as it stands once ``accepted`` (started from it) is accepted: the job gone,
    what depends on it met, the number it took (a first send's) gone from the counter."""
    job = accepted.job
    rest = tuple(_met(other, job.id) for other in head.jobs if other.id != job.id)
    took = job.number is None and accepted.number is not None
    counter = job.kind.numbered_by if took else None
    return dataclasses.replace(
        head,
        jobs=rest,
        next_invc_no=head.next_invc_no + (counter == "invcNo"),
        next_sar_no=head.next_sar_no + (counter == "sarNo"),
    )


def _met(job: HeadJob, accepted_id: int) -> HeadJob:
    """``job`` with its dependency on ``accepted_id``, if any, met."""
    if all(d.job_id != accepted_id for d in job.dependencies):
        return job
    met = Dependency(accepted_id, JobState.ACCEPTED)
    deps = tuple(met if d.job_id == accepted_id else d for d in job.dependencies)
    return dataclasses.replace(job, dependencies=deps)


def _may_ride(job: HeadJob, settings: CoalesceSettings) -> bool:
    """Whether nothing of ``job``'s start depends on the acceptance it would ride on, nor on
    a question :func:`_prepare` asks the store first:

    - a stock master whose ``rsdQty`` the relay computes reads a balance the acceptance may
      change, and is the one kind coalescing may supersede;
    - a stock-out that merging applies to (:func:`worker.defer.merging_applies`, the test
      :func:`_carrier` makes too) may wait behind later sales or carry others; a stock
      movement's resend may carry merged stock-outs whatever the setting says now.
    """
    if job.kind is JobKind.STOCK_IO:
        return job.body is None and not defer.merging_applies(job, settings)
    if job.kind is not JobKind.STOCK_MASTER:
        return True
    return loads_payload(job.payload).get("rsdQty") is not None


@dataclass(frozen=True, slots=True)
class _NextStart:
    """A planned start as the record writes it: at the record's time, pushing the lease out
    if that is due."""

    planned: _Planned
    now: float
    lease_until: float | None

    def rode(self, recorded: Recorded) -> _Prepared | None:
        """The next job ready for its call, if its start took along with the record."""
        if not recorded.started or recorded.head is None:
            return None
        send = self.planned.send(None if self.lease_until is None else self.now)
        return _Prepared(send, recorded.head.next_seq, head=recorded.head)


def _with_next(record: JobRecord, then: _NextStart | None) -> JobRecord:
    if then is None:
        return record
    return dataclasses.replace(record, then=then.planned.start(then.lease_until))


#: Kinds whose amounts are computed with the branch's tax rates.
_RATED_KINDS = frozenset({JobKind.SALE, JobKind.CREDIT_NOTE, JobKind.STOCK_IO})


def _build_body(
    lease: Lease, job: HeadJob, number: int | None, ctx: DrainContext
) -> str | LocalFailure:
    """The request body, frozen at first send. What it needs from the database is read
    first, so that a database error stays one and never passes for bad job data."""
    payload = loads_payload(job.payload)
    org_invc_no = None
    if job.kind is JobKind.CREDIT_NOTE and job.original_job_id is not None:
        org_invc_no = ctx.store.invc_no_of(job.original_job_id)
    rsd_qty: Decimal | None = None
    if job.kind is JobKind.STOCK_MASTER and payload.get("rsdQty") is None:
        rsd_qty = ctx.store.stock_balance(lease.branch_id, str(payload.get("itemCd")))
    try:
        rates = _rates(job, ctx)
    except (DeviceNotInitialised, NoTaxRates) as exc:
        # No rates to compute with: the branch waits (parked) for a device or a codes
        # sync, which unpark it; nothing was taken or written for this job.
        return LocalFailure(job, str(exc), park=True)
    try:
        body = complete_body(
            job.kind, payload, tin=job.tin, bhf_id=job.bhf_id, number=number,
            org_invc_no=org_invc_no, rsd_qty=rsd_qty, registrant=ctx.registrant,
            scheme=VatScheme(ctx.settings.vat_scheme), rates=rates,
        )  # fmt: skip
    except Exception as exc:
        # The job's own data cannot make a body (a rate or scheme changed since enqueue, a
        # stock master with no balance, a bug): dead with the reason, no call.
        message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        return LocalFailure(job, message)
    return dumps_body(body)


def _rates(job: HeadJob, ctx: DrainContext) -> Mapping[str, Decimal] | None:
    """The rates the body is frozen with: ETIMS_TAX_RATES if set, else KRA's for the branch
    (cached with the device). Raises DeviceNotInitialised or NoTaxRates."""
    if job.kind not in _RATED_KINDS:
        return None
    return ctx.devices.tax_rates(job.tin, job.bhf_id, ctx.settings.tax_rates)


# --------------------------------------------------------------------------- send


def _send(step: Send | LocalFailure, ctx: DrainContext) -> Verdict:
    """The OSCU call (no database connection held meanwhile) and what it decides."""
    if isinstance(step, LocalFailure):
        return _local(step)
    job = step.job
    kind = job.kind
    try:
        device = ctx.devices.get(job.tin, job.bhf_id)
    except DeviceNotInitialised as exc:
        outcome = _no_call(kind, "DEVICE", str(exc))
        parked = Park(str(exc), release_number=not step.maybe_recorded)
        return Verdict(job, parked, outcome, step.number, step.maybe_recorded)
    started = ctx.clock()
    outcome = ctx.client.call(
        kind.endpoint, step.body, device=device.credentials, write=True,
        encoded=step.body_text.encode(),
    )  # fmt: skip
    ctx.observer.call_finished(kind, outcome, job, step.attempt)
    if outcome.kind is OutcomeKind.AUTH:
        ctx.devices.forget(job.tin, job.bhf_id)
    elif outcome.ok:
        ctx.devices.key_worked(job.tin, job.bhf_id)  # a write at most once a minute
    maybe_recorded = step.maybe_recorded or (
        outcome.may_have_reached_kra and outcome.kind in _INCONCLUSIVE
    )
    called = Called(step, outcome, started, device, maybe_recorded)
    verdict = decide(
        kind,
        outcome,
        attempt=step.attempt,
        # Including this call: if it may have reached KRA, its number must never be released.
        maybe_recorded=maybe_recorded,
        number=step.number,
        retry=ctx.settings.retry,
        age_s=started - job.created_at,
    )
    receipt: dict[str, Any] | None
    if isinstance(verdict, Accept):
        decision: Decision = verdict
        receipt = effects.receipt_for(outcome, kind)
    else:  # rare: may ask KRA (or the outbox) before deciding
        decision, receipt = recovery.resolve(verdict, called, ctx.store, ctx.client, ctx.settings)
    return Verdict(job, decision, outcome, step.number, maybe_recorded, called, receipt)


#: Answers that leave it open whether this call reached KRA. A refusal (910, 90x, 922, a
#: duplicate) is KRA's answer to this very call: it did not record it.
_INCONCLUSIVE = frozenset({OutcomeKind.TRANSIENT, OutcomeKind.UNKNOWN, OutcomeKind.RATE_LIMITED})


def _local(failure: LocalFailure) -> Verdict:
    """No call: the branch parks (no device, no rates) or the job is dead (no body)."""
    if failure.park:
        outcome = _no_call(failure.job.kind, "DEVICE", failure.message)
        return Verdict(
            failure.job, Park(failure.message, release_number=True), outcome, None, False
        )
    outcome = _no_call(failure.job.kind, "LOCAL", failure.message, OutcomeKind.REJECTED)
    return Verdict(failure.job, Dead("LOCAL", failure.message, True), outcome, None, False)


def _no_call(
    kind: JobKind, code: str, message: str, outcome: OutcomeKind = OutcomeKind.AUTH
) -> CallOutcome:
    return CallOutcome(outcome, kind.endpoint, code, message, may_have_reached_kra=False)
