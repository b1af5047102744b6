"""Hooks the drain calls at each step; logging, metrics and audit hang off them.

The base class is a set of documented hooks plus one log line per event (arq style), so the
drain calls ``observer.job_decided(...)`` once and never knows who listens.
:class:`MetricsObserver` adds the Prometheus counters of :mod:`worker.metrics`; it is what
``Runtime.drain_context`` gives every drain.

Log lines carry their fields twice: as ``key=value`` in the message (the text format) and as
``extra`` fields (the JSON format, see :mod:`worker.logs`). Never a body or a payload: ids,
identities, outcomes, KRA's code, latency and attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from schemas.jobs import JobKind
from worker import metrics
from worker.decide import Accept, Dead, Decision, Park, Retry
from worker.oscu.outcome import CallOutcome
from worker.outbox.writes import EndedMember

log = logging.getLogger("etims_relay.jobs")
call_log = logging.getLogger("etims_relay.calls")


class DrainObserver:
    """Default observer: one log line per OSCU call and per job transition."""

    def lease_taken(self, branch_id: int) -> None:
        """A drain took a branch's lease."""

    def lease_lost(self, branch_id: int) -> None:
        """A drain found its lease taken over (its writes were refused)."""
        log.warning(
            "branch=%s lease lost; another worker took over",
            branch_id,
            extra={"event": "lease_lost", "branch_id": branch_id},
        )

    def call_finished(
        self,
        kind: JobKind,
        outcome: CallOutcome,
        job: Any = None,
        attempt: int | None = None,
    ) -> None:
        """One OSCU call for ``job`` returned (any outcome)."""
        fields: dict[str, Any] = _job_fields(job) if job is not None else {"kind": kind.value}
        fields.update(
            event="oscu_call",
            endpoint=outcome.endpoint,
            attempt=attempt,
            outcome=outcome.kind.value,
            result_code=outcome.result_code,
            http_status=outcome.http_status,
            latency_ms=round(outcome.latency_s * 1000, 1),
            error=outcome.error,
        )
        call_log.info(
            "oscu call job=%s key=%s branch=%s kind=%s endpoint=%s attempt=%s outcome=%s "
            "code=%s latency_ms=%.1f",
            fields.get("job_id"),
            fields.get("idempotency_key"),
            fields.get("branch"),
            fields["kind"],
            outcome.endpoint,
            attempt,
            outcome.kind.value,
            outcome.result_code,
            fields["latency_ms"],
            extra=fields,
        )

    def job_superseded(self, job: Any, superseded_by: int, now: float) -> None:
        """A stock master ended superseded without a call (worker/coalesce.py)."""
        fields = _job_fields(job)
        fields.update(event="job_state", state="superseded", superseded_by=superseded_by)
        log.info(
            "job=%s key=%s branch=%s kind=%s -> superseded by job %s",
            job.id,
            job.idempotency_key,
            fields["branch"],
            job.kind,
            superseded_by,
            extra=fields,
        )

    def members_ended(
        self, carrier: Any, members: Sequence[EndedMember], decision: Decision, now: float
    ) -> None:
        """Stock-outs carried by ``carrier``'s merged send ended as it did (accepted or dead
        with it, :mod:`worker.stock_merge`); one line each, as for a job sent on its own."""
        state = _state_of(decision)
        level = logging.WARNING if isinstance(decision, Dead) else logging.INFO
        branch = f"{carrier.tin}/{carrier.bhf_id}"
        for member in members:
            fields = {
                "job_id": member.id,
                "idempotency_key": member.idempotency_key,
                "branch": branch,
                "kind": str(carrier.kind),
                "event": "job_state",
                "from_state": "merged",
                "state": state,
                "merged_into": carrier.id,
            }
            log.log(
                level,
                "job=%s key=%s branch=%s kind=%s -> %s with job %s (merged send)",
                member.id,
                member.idempotency_key,
                branch,
                carrier.kind,
                state,
                carrier.id,
                extra=fields,
            )

    def job_decided(self, job: Any, decision: Decision, outcome: CallOutcome, now: float) -> None:
        """A job changed state after a call; one log line per transition."""
        state = _state_of(decision)
        fields = _job_fields(job)
        fields.update(
            event="job_state",
            attempt=int(job.attempts) + 1,
            outcome=outcome.kind.value,
            result_code=outcome.result_code,
            latency_ms=round(outcome.latency_s * 1000, 1),
            from_state=str(job.state),
            state=state,
            reason=_reason_of(decision),
        )
        level = logging.WARNING if isinstance(decision, Dead | Park) else logging.INFO
        log.log(
            level,
            "job=%s key=%s branch=%s kind=%s attempt=%s outcome=%s code=%s latency_ms=%.1f -> %s",
            job.id,
            job.idempotency_key,
            fields["branch"],
            job.kind,
            fields["attempt"],
            outcome.kind.value,
            outcome.result_code,
            fields["latency_ms"],
            state,
            extra=fields,
        )


class MetricsObserver(DrainObserver):
    """The log lines of :class:`DrainObserver` plus the counters of :mod:`worker.metrics`."""

    def lease_taken(self, branch_id: int) -> None:
        super().lease_taken(branch_id)
        metrics.DRAINS.inc()

    def lease_lost(self, branch_id: int) -> None:
        super().lease_lost(branch_id)
        metrics.LEASE_TAKEOVERS.inc()

    def call_finished(
        self,
        kind: JobKind,
        outcome: CallOutcome,
        job: Any = None,
        attempt: int | None = None,
    ) -> None:
        super().call_finished(kind, outcome, job, attempt)
        metrics.record_call(outcome)

    def job_superseded(self, job: Any, superseded_by: int, now: float) -> None:
        super().job_superseded(job, superseded_by, now)
        metrics.JOB_OUTCOMES.labels(str(job.kind), "superseded").inc()

    def members_ended(
        self, carrier: Any, members: Sequence[EndedMember], decision: Decision, now: float
    ) -> None:
        """Each stock-out a merged send carried counts as a job with the carrier's outcome
        (a sum of accepted stock_io jobs is every stock-out KRA holds); how many rode in
        merged sends, and in how many sends, is counted apart."""
        super().members_ended(carrier, members, decision, now)
        kind = str(carrier.kind)
        match decision:
            case Accept():
                outcome = "accepted"
                for member in members:
                    metrics.ENQUEUE_TO_ACCEPTED.labels(kind).observe(
                        max(0.0, now - member.created_at)
                    )
            case Dead(code=code):
                outcome = "dead"
                metrics.DEAD_LETTERS.labels(kind, metrics.code_label(code)).inc(len(members))
            case _:  # a retry or a park leaves them waiting inside the send
                return
        metrics.JOB_OUTCOMES.labels(kind, outcome).inc(len(members))
        metrics.STOCK_OUTS_MERGED.labels(outcome).inc(len(members))
        metrics.MERGED_SENDS.labels(outcome).inc()

    def job_decided(self, job: Any, decision: Decision, outcome: CallOutcome, now: float) -> None:
        super().job_decided(job, decision, outcome, now)
        kind = str(job.kind)
        match decision:
            case Accept():
                metrics.JOB_OUTCOMES.labels(kind, "accepted").inc()
                metrics.ENQUEUE_TO_ACCEPTED.labels(kind).observe(
                    max(0.0, now - float(job.created_at))
                )
            case Retry(reason=reason):
                metrics.JOB_OUTCOMES.labels(kind, "retry").inc()
                metrics.RETRIES.labels(kind, reason).inc()
            case Dead(code=code):
                metrics.JOB_OUTCOMES.labels(kind, "dead").inc()
                metrics.DEAD_LETTERS.labels(kind, metrics.code_label(code)).inc()
            case Park():
                metrics.JOB_OUTCOMES.labels(kind, "parked").inc()
                metrics.BRANCH_PARKS.inc()


def _job_fields(job: Any) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "idempotency_key": job.idempotency_key,
        "branch": f"{job.tin}/{job.bhf_id}",
        "kind": str(job.kind),
    }


def _state_of(decision: Decision) -> str:
    match decision:
        case Accept():
            return "accepted"
        case Retry(state=state):
            return state.value
        case Dead():
            return "dead"
        case Park():
            return "pending (branch parked)"


def _reason_of(decision: Decision) -> str | None:
    match decision:
        case Accept(via_duplicate=True):
            return "duplicate answer: already recorded"
        case Accept():
            return None
        case Retry(reason=reason):
            return reason
        case Dead(message=message):
            return message
        case Park(reason=reason):
            return reason
