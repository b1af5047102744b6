"""Hooks the drain calls at each step; logging, metrics and audit hang off them.

The base class is a set of documented no-ops plus one log line per transition (arq style),
so the drain calls ``observer.job_decided(...)`` once and never knows who listens.
"""

from __future__ import annotations

import logging
from typing import Any

from schemas.jobs import JobKind
from worker.decide import Accept, Dead, Decision, Park, Retry
from worker.oscu.outcome import CallOutcome

log = logging.getLogger("etims_relay.jobs")


class DrainObserver:
    """Default observer: logs each job transition; subclasses add metrics."""

    def lease_taken(self, branch_id: int) -> None:
        """A drain took a branch's lease."""

    def lease_lost(self, branch_id: int) -> None:
        """A drain found its lease taken over (its writes were refused)."""
        log.warning("branch=%s lease lost; another worker took over", branch_id)

    def call_finished(self, kind: JobKind, outcome: CallOutcome) -> None:
        """One OSCU call returned (any outcome)."""

    def job_decided(self, job: Any, decision: Decision, outcome: CallOutcome, now: float) -> None:
        """A job changed state after a call; one log line per transition."""
        state = _state_of(decision)
        log.info(
            "job=%s key=%s branch=%s/%s kind=%s attempt=%s outcome=%s code=%s latency_ms=%.1f -> %s",
            job.id,
            job.idempotency_key,
            job.tin,
            job.bhf_id,
            job.kind,
            int(job.attempts) + 1,
            outcome.kind.value,
            outcome.result_code,
            outcome.latency_s * 1000,
            state,
        )


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
