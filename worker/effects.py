"""What a decision writes: the job's new state and what follows from it, as a value.

Pure: no database, no KRA. The drain hands the :class:`~worker.outbox.writes.JobRecord` to
its store, which writes all of it (attempt row, job state, result event, stock balances,
dependents, a park) fenced by the lease, together or not at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from schemas.codes import StockIOType
from schemas.envelope import SaleSignature
from schemas.jobs import JobKind, JobState
from schemas.qr import receipt_qr_url
from worker import decide
from worker.oscu.outcome import CallOutcome
from worker.outbox.writes import (
    Accept,
    AttemptRow,
    BodyFate,
    JobRecord,
    Kill,
    Number,
    Park,
    Retry,
    event_json,
)
from worker.steps import Called, Verdict

SALE_KINDS = (JobKind.SALE, JobKind.CREDIT_NOTE)


@dataclass(frozen=True, slots=True)
class Recorder:
    """What every record of a worker process shares."""

    worker: str
    #: KRA's sandbox host: receipts' QR codes point at its verification page
    sandbox: bool


def record_of(verdict: Verdict, now: float, recorder: Recorder) -> JobRecord:
    """The writes of ``verdict``."""
    job, decision = verdict.job, verdict.decision
    attempt = _attempt_row(verdict.called, verdict.outcome, recorder.worker)
    # a carrier's send carried its members only if it was made (no call: never marked)
    merged = job.merged if verdict.called is not None else ()
    match decision:
        case decide.Accept():
            write = _accepted(verdict, recorder)
            extra = {"receipt": verdict.receipt, "qr_url": write.qr_url}
            event = event_json(job, JobState.ACCEPTED, now, merged=merged,
                               result_code=write.result_code,
                               result_message=write.result_message, **extra)  # fmt: skip
            return JobRecord(job, now, write, attempt, event)
        case decide.Retry():
            retry = Retry(
                decision.state, now + decision.delay_s, verdict.maybe_recorded,
                verdict.outcome.result_code, verdict.outcome.message,
            )  # fmt: skip
            return JobRecord(job, now, retry, attempt)
        case decide.Dead():
            fate, gives_back = _fate(verdict, decision.release_number)
            kill = Kill(decision.code, decision.message, fate, gives_back)
            event = event_json(job, JobState.DEAD, now, merged=merged,
                               result_code=decision.code,
                               result_message=decision.message)  # fmt: skip
            return JobRecord(job, now, kill, attempt, event)
        case decide.Park():
            fate, gives_back = _fate(verdict, decision.release_number)
            expected = decision.expected
            park = Park(
                decision.reason, fate, gives_back,
                None if expected is None else Number(expected.counter, expected.expected),
            )  # fmt: skip
            return JobRecord(job, now, park, attempt)
    raise TypeError(decision)


def receipt_for(outcome: CallOutcome, kind: JobKind) -> dict[str, Any] | None:
    """The signature of a sale KRA just accepted (a recovered one comes from
    worker/recovery.py)."""
    if kind not in SALE_KINDS or outcome.data is None:
        return None
    return SaleSignature.model_validate(outcome.data).model_dump(mode="json")


def stock_deltas(body: dict[str, Any]) -> dict[str, Decimal]:
    """Quantity per item this accepted movement adds to (in) or takes from (out) the branch."""
    sign = Decimal(1) if StockIOType(str(body["sarTyCd"])).is_in else Decimal(-1)
    deltas: dict[str, Decimal] = {}
    for line in body.get("itemList", []):
        item_cd = line.get("itemCd")
        if item_cd:
            deltas[item_cd] = deltas.get(item_cd, Decimal(0)) + sign * Decimal(str(line["qty"]))
    return deltas


def _accepted(verdict: Verdict, recorder: Recorder) -> Accept:
    job, outcome, receipt, called = verdict.job, verdict.outcome, verdict.receipt, verdict.called
    stock: tuple[tuple[str, Decimal], ...] = ()
    if job.kind is JobKind.STOCK_IO and called is not None:
        stock = tuple(sorted(stock_deltas(called.send.body).items()))
    if job.kind not in SALE_KINDS:
        return Accept(outcome.result_code, outcome.message, stock=stock)
    device = called.device if called is not None else None
    return Accept(
        outcome.result_code,
        outcome.message,
        receipt=None if receipt is None else json.dumps(receipt),
        receipt_missing=receipt is None,
        qr_url=None
        if receipt is None
        else receipt_qr_url(job.tin, job.bhf_id, receipt["rcptSign"], sandbox=recorder.sandbox),
        sdc_id=None if device is None else device.sdc_id,
        mrc_no=None if device is None else device.mrc_no,
    )


def _fate(verdict: Verdict, release_number: bool) -> tuple[BodyFate, Number | None]:
    """A number is handed back only when KRA provably does not hold it (``release_number``);
    a held number keeps the exact body when an attempt may have reached KRA (a resend must
    repeat it), else the body is rebuilt with the same number once the cause is fixed."""
    counter = verdict.job.kind.numbered_by
    if release_number:
        if counter is None or verdict.number is None:
            return "rebuild", None
        return "release", Number(counter, verdict.number)
    if isinstance(verdict.decision, decide.Park) and not verdict.maybe_recorded:
        return "rebuild", None
    return "keep", None


def _attempt_row(called: Called | None, outcome: CallOutcome, worker: str) -> AttemptRow | None:
    if called is None:
        return None
    send = called.send
    return AttemptRow(
        number=send.attempt,
        kra_number=send.number,
        started_at=called.started,
        latency_s=outcome.latency_s,
        outcome=outcome.kind.value,
        result_code=outcome.result_code,
        message=(outcome.message or "")[:2000],
        http_status=outcome.http_status,
        error=outcome.error,
        request_hash=hashlib.sha256(send.body_text.encode()).hexdigest(),
        worker=worker,
    )
