"""What the drain reads of the outbox, as typed values built at the boundary (``from_row``).

The drain never sees a database row: the store turns each into one of these frozen values,
so a column a query does not select is a type error, not an ``AttributeError`` at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from schemas.jobs import Counter, JobKind, JobState


class LeaseLost(Exception):
    """The fencing token moved on: another worker owns the branch now. Write nothing more."""


class HeadMoved(Exception):
    """The head job or the branch's next invcNo/sarNo is no longer what the head read showed:
    an operator acted in between (``skip``, ``branch set-next``). Nothing was written; read
    the head again."""


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to send one branch's jobs; every write of the holder is fenced by ``token``."""

    branch_id: int
    token: int
    owner: str


#: A dependency in one of these states can never be satisfied without an operator.
HOPELESS = frozenset({JobState.DEAD, JobState.BLOCKED, JobState.SKIPPED})
#: A dependency in one of these states lets its dependent go. Superseded counts once its
#: balance is at KRA: the head read shows a superseded dependency as pending until a later
#: stock master of its item in its branch is accepted (``read_head`` in sql/drain.sql). A
#: stock master with a dependent is never superseded (``worker.coalesce``, and
#: ``supersede_job`` checks again), so only a job enqueued after the fact names one; in
#: another branch nothing else would hold it back.
SATISFIED = frozenset({JobState.ACCEPTED, JobState.SUPERSEDED})


@dataclass(frozen=True, slots=True)
class Dependency:
    job_id: int
    state: JobState


@dataclass(frozen=True, slots=True)
class HeadJob:
    """An active job as the drain reads it to send it (not its results or receipt)."""

    id: int
    tin: str
    bhf_id: str
    seq: int
    kind: JobKind
    idempotency_key: str
    payload: str
    original_job_id: int | None
    state: JobState
    attempts: int
    next_attempt_at: float | None
    maybe_recorded: bool
    invc_no: int | None
    sar_no: int | None
    #: the frozen request body once the job was first started; None before
    body: str | None
    created_at: float
    dependencies: tuple[Dependency, ...]
    #: accepting it must look at its dependents (in another branch, or blocked)
    wakes_dependents: bool
    #: a carrier: the stock-outs its merged send carries (set by the drain before the start,
    #: from ``merged_members``); they end as it does
    merged: tuple[int, ...] = ()

    @classmethod
    def from_row(cls, row: Any, dependencies: Sequence[Dependency]) -> HeadJob:
        return cls(
            id=int(row.id),
            tin=str(row.tin),
            bhf_id=str(row.bhf_id),
            seq=int(row.seq),
            kind=JobKind(row.kind),
            idempotency_key=str(row.idempotency_key),
            payload=str(row.payload),
            original_job_id=None if row.original_job_id is None else int(row.original_job_id),
            state=JobState(row.state),
            attempts=int(row.attempts),
            next_attempt_at=None if row.next_attempt_at is None else float(row.next_attempt_at),
            maybe_recorded=bool(row.maybe_recorded),
            invc_no=None if row.invc_no is None else int(row.invc_no),
            sar_no=None if row.sar_no is None else int(row.sar_no),
            body=None if row.body is None else str(row.body),
            created_at=float(row.created_at),
            dependencies=tuple(dependencies),
            wakes_dependents=bool(row.wakes_dependents),
        )

    @property
    def number(self) -> int | None:
        """The KRA number it holds (invcNo or sarNo, by kind), if any."""
        return self.invc_no if self.kind.numbered_by == "invcNo" else self.sar_no


@dataclass(frozen=True, slots=True)
class BranchHead:
    """One read of a branch for the drain: its counters and its first active jobs."""

    #: ``next_seq`` from the same snapshot as the jobs, so "no job at or past next_seq was
    #: seen" holds when the drain later releases the branch with it.
    next_seq: int
    next_invc_no: int
    next_sar_no: int
    #: the first active jobs in seq order; the first is the head
    jobs: tuple[HeadJob, ...]

    @classmethod
    def from_rows(
        cls, rows: Sequence[Any], branch_id: int, accepted_id: int | None = None
    ) -> BranchHead:
        """Group the head read's rows (one per job and dependency). ``accepted_id``: a job
        the same statement accepted, which its snapshot still shows in its old state."""
        if not rows:
            raise LookupError(f"no branch {branch_id}")
        jobs: dict[int, tuple[Any, list[Dependency]]] = {}
        for row in rows:
            if row.id is None:  # a branch with no active job
                continue
            _, deps = jobs.setdefault(int(row.id), (row, []))
            if row.dep_id is not None:
                dep_id = int(row.dep_id)
                state = JobState.ACCEPTED if dep_id == accepted_id else JobState(row.dep_state)
                deps.append(Dependency(dep_id, state))
        first = rows[0]
        return cls(
            next_seq=int(first.branch_next_seq),
            next_invc_no=int(first.branch_next_invc_no),
            next_sar_no=int(first.branch_next_sar_no),
            jobs=tuple(HeadJob.from_row(row, deps) for row, deps in jobs.values()),
        )

    def next_number(self, counter: Counter) -> int:
        """What a job taking a number of ``counter`` ("invcNo", "sarNo") gets now."""
        return self.next_invc_no if counter == "invcNo" else self.next_sar_no


@dataclass(frozen=True, slots=True)
class StockMasterFacts:
    """What the branch says about a stock master about to be sent (``worker.coalesce``)."""

    #: the latest stock master of the same item still to send in the branch, if any
    later_id: int | None
    #: whether KRA already accepted a stock master of this item from this branch
    item_reported: bool
    #: whether any job depends on this one
    has_dependents: bool

    @classmethod
    def from_row(cls, row: Any) -> StockMasterFacts:
        later = None if row.later_id is None else int(row.later_id)
        return cls(later, bool(row.item_reported), bool(row.has_dependents))


@dataclass(frozen=True, slots=True)
class StockOutDeferral:
    """What the branch says past a never-sent stock-out at its head (``worker.defer``)."""

    #: the branch's counters and the first active sale or credit note after the head, if any
    #: (one snapshot: the sale is started with these counters, as a head would be)
    past: BranchHead
    #: active stock movements that sale would pass, the head included
    deferred_jobs: int
    #: other active jobs between the head and that sale, which nothing may pass
    barriers: int
    #: when the head's last dependency was accepted (None: it has none)
    head_ready_since: float | None

    @classmethod
    def from_rows(cls, rows: Sequence[Any], branch_id: int) -> StockOutDeferral:
        first = rows[0] if rows else None
        ready = None if first is None else first.head_ready_since
        return cls(
            past=BranchHead.from_rows(rows, branch_id),
            deferred_jobs=0 if first is None else int(first.deferred_jobs or 0),
            barriers=0 if first is None else int(first.barriers or 0),
            head_ready_since=None if ready is None else float(ready),
        )


@dataclass(frozen=True, slots=True)
class StockOut:
    """A stock-out that goes, or may go, inside a carrier's merged send."""

    id: int
    seq: int
    payload: str

    @classmethod
    def from_row(cls, row: Any) -> StockOut:
        return cls(int(row.id), int(row.seq), str(row.payload))
