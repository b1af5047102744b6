"""What the drain writes, as values: the in_flight mark before a call, and the result after.

:mod:`worker.effects` decides these from a decision (pure, no database); the branch store
(:mod:`worker.outbox.branch_store`) writes them, fenced by the lease, each in one step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from schemas.jobs import Counter, JobState
from worker.outbox.rows import BranchHead, HeadJob


@dataclass(frozen=True, slots=True)
class Number:
    """A KRA number of one counter ("invcNo" or "sarNo")."""

    counter: Counter
    value: int


@dataclass(frozen=True, slots=True)
class Start:
    """A job's in_flight mark, committed before its call.

    ``takes``: the branch's next number, compare-and-set on the value the body was built
    with. The job itself is compare-and-set too, on the state and numbers the head read
    showed (``read_*``): an operator's ``skip`` or ``set-next`` in between changes them, and
    a start that went ahead anyway would undo the skip or send a number the counter gave
    back (:class:`~worker.outbox.rows.HeadMoved`: nothing written, read the head again).
    """

    job_id: int
    attempt: int
    maybe_recorded: bool
    #: the body frozen now, on the job's first start; None: a resend keeps the stored one
    body: str | None
    takes: Number | None
    #: the lease pushed out to this time, when due (see the drain's ``Renewal``)
    lease_until: float | None
    #: the job as the head read showed it
    read_state: JobState
    read_invc_no: int | None
    read_sar_no: int | None
    #: a carrier's first start: the stock-outs that go inside its merged send from now on
    #: (each compare-and-set on the job as ``merge_candidates`` read it, with the start)
    merges: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """The ``attempts`` row of one OSCU call."""

    number: int
    kra_number: int | None
    started_at: float
    latency_s: float
    outcome: str
    result_code: str | None
    message: str
    http_status: int | None
    error: str | None
    request_hash: str
    worker: str


@dataclass(frozen=True, slots=True)
class Accept:
    result_code: str | None
    result_message: str | None
    #: sales and credit notes: KRA's signature (JSON), or None with ``receipt_missing``
    receipt: str | None = None
    receipt_missing: bool | None = None
    qr_url: str | None = None
    sdc_id: str | None = None
    mrc_no: str | None = None
    #: an accepted stock movement: quantity per item added to the branch's balances
    stock: tuple[tuple[str, Decimal], ...] = ()


@dataclass(frozen=True, slots=True)
class Retry:
    state: JobState  # retry_wait or unknown
    next_attempt_at: float
    maybe_recorded: bool
    result_code: str | None
    result_message: str | None


#: What becomes of a job's body and number when it stops: kept, the body dropped (rebuilt
#: later with the same number), or both dropped (KRA provably does not hold the number).
BodyFate = Literal["keep", "rebuild", "release"]


@dataclass(frozen=True, slots=True)
class Kill:
    result_code: str
    result_message: str
    body: BodyFate
    #: handed back to the branch's counter if nothing was allocated after it
    gives_back: Number | None = None


@dataclass(frozen=True, slots=True)
class Park:
    """The job waits at the head; the branch stops until an operator acts."""

    reason: str
    body: BodyFate
    gives_back: Number | None = None
    #: the number KRA said it expects next, kept for ``branch set-next``
    expected: Number | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """Everything one job's result writes, together or not at all."""

    job: HeadJob
    now: float
    write: Accept | Retry | Kill | Park
    #: None when no call was made (a body that could not be built, no device)
    attempt: AttemptRow | None
    #: the ``result_events`` body (JSON) of an acceptance or a dead job
    event: str | None = None
    #: an acceptance only: the next job's start, planned by the drain from the head read
    #: before this job's, written with the acceptance and under the same guards as
    #: ``BranchStore.start`` (at ``now``); refused, it writes nothing and the acceptance stands
    then: Start | None = None


@dataclass(frozen=True, slots=True)
class EndedMember:
    """A stock-out that ended as its carrier's merged send did (accepted or dead with it):
    what the drain's observer counts and logs for it, as for a job sent on its own."""

    id: int
    idempotency_key: str
    #: its enqueue time (``jobs.created_at``): enqueue-to-accepted counts it too
    created_at: float


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording a job's result did."""

    state: JobState
    #: other branches whose jobs it unblocked or that wait for this job: wake them
    woken: frozenset[int] = frozenset()
    #: the branch's head as it stands after the write, when the store read it along (with
    #: ``then``: the next job as it was before its start, whether the start took or not)
    head: BranchHead | None = None
    #: the record's ``then`` took: the next job is in_flight, ready for its call
    started: bool = False
    #: a carrier's acceptance or death: the stock-outs its send carried that ended with it
    #: (in seq order), in :attr:`state` too
    members: tuple[EndedMember, ...] = ()


@dataclass(frozen=True, slots=True)
class EventJob:
    """The fields of a job a result event names."""

    id: int
    idempotency_key: str
    kind: str
    tin: str


def event_json(
    job: EventJob | HeadJob,
    state: JobState,
    now: float,
    *,
    merged: Sequence[int] = (),
    **result: object,
) -> str:
    """The ``result_events`` body of a transition (what webhooks and consumers read);
    ``result``: result_code, result_message, receipt, qr_url, when there are any.
    ``merged``: a carrier's, the stock-outs its send carried (each names it in its own
    event's ``merged_into``): a consumer goes from the merged send to the originals."""
    body = {
        "job_id": job.id,
        "idempotency_key": job.idempotency_key,
        "kind": str(job.kind),
        "tin": job.tin,
        "state": state.value,
        "result_code": result.get("result_code"),
        "result_message": result.get("result_message"),
        "receipt": result.get("receipt"),
        "qr_url": result.get("qr_url"),
        "at": now,
    }
    if merged:
        body["merged"] = list(merged)
    return json.dumps(body, default=str)
