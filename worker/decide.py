"""From one OSCU call's outcome to what happens to the job: a pure function, tested by table.

The drain ``match``es on the returned :data:`Decision`. The rules carry invariants 2 and 5:

- a number that may have reached KRA is never handed to another job: such a job is retried
  with the identical body, or the branch is parked for an operator, never dead-and-released;
- a duplicate answer means "ours" only if an earlier attempt with this number may have
  landed; on a first send it means KRA's counter is ahead of ours, and the branch parks.
"""

from __future__ import annotations

from dataclasses import dataclass

from etims_relay.settings import RetrySettings
from schemas.jobs import JobKind, JobState
from worker.backoff import retry_delay
from worker.oscu.outcome import CallOutcome, OutcomeKind


@dataclass(frozen=True, slots=True)
class Accept:
    #: True when KRA answered "duplicate" and we concluded the job is already recorded.
    via_duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    state: JobState  # RETRY_WAIT or UNKNOWN
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class Dead:
    code: str
    message: str
    #: Give the KRA number back for the next job (only when KRA provably does not hold it).
    release_number: bool


@dataclass(frozen=True, slots=True)
class Park:
    reason: str
    release_number: bool


Decision = Accept | Retry | Dead | Park

#: Kinds whose writes are upserts: a duplicate is harmless and means recorded.
IDEMPOTENT_KINDS = frozenset({JobKind.ITEM, JobKind.STOCK_MASTER})


def decide(
    kind: JobKind,
    outcome: CallOutcome,
    *,
    attempt: int,
    maybe_recorded: bool,
    number: int | None,
    retry: RetrySettings,
    age_s: float = float("inf"),
) -> Decision:
    """Decide the job's next state after its ``attempt``-th call (1-based), ``age_s`` after
    the job was enqueued."""
    exhausted = attempt >= retry.max_attempts and age_s >= retry.give_up_after_s
    code = outcome.result_code or ""
    message = outcome.message or outcome.kind.value
    match outcome.kind:
        case OutcomeKind.ACCEPTED | OutcomeKind.EMPTY:
            return Accept()
        case OutcomeKind.DUPLICATE:
            if maybe_recorded or kind in IDEMPOTENT_KINDS:
                return Accept(via_duplicate=True)
            return Park(
                f"KRA already holds {kind.numbered_by} {number} (answered {code} to its first "
                f"send): KRA's counter is ahead of ours. Find KRA's next number and run "
                f"etims-relay branch set-next",
                release_number=True,
            )
        case OutcomeKind.SEQUENCE:
            if attempt >= retry.sequence_max_attempts:
                return Dead(code, f"{message} (after {attempt} attempts)", release_number=True)
            return _retry(JobState.RETRY_WAIT, attempt, retry, outcome, "sequence")
        case OutcomeKind.RATE_LIMITED | OutcomeKind.TRANSIENT:
            if exhausted:
                return _exhausted(code, message, attempt, maybe_recorded)
            reason = "rate_limited" if outcome.kind is OutcomeKind.RATE_LIMITED else "transient"
            return _retry(JobState.RETRY_WAIT, attempt, retry, outcome, reason)
        case OutcomeKind.UNKNOWN:
            if exhausted:
                return _exhausted(code, message, attempt, maybe_recorded=True)
            return _retry(JobState.UNKNOWN, attempt, retry, outcome, "unknown")
        case OutcomeKind.REJECTED | OutcomeKind.AUTH:
            return Dead(code, message, release_number=True)


def _retry(
    state: JobState, attempt: int, retry: RetrySettings, outcome: CallOutcome, reason: str
) -> Retry:
    delay = retry_delay(
        attempt, base_s=retry.base_s, cap_s=retry.cap_s, retry_after_s=outcome.retry_after_s
    )
    return Retry(state, delay, reason)


def _exhausted(code: str, message: str, attempt: int, maybe_recorded: bool) -> Decision:
    if maybe_recorded:
        return Park(
            f"outcome still unknown after {attempt} attempts ({message}); the number may be "
            "recorded at KRA: check it, then replay or set-next",
            release_number=False,
        )
    return Dead(code or "ATTEMPTS", f"gave up after {attempt} attempts: {message}", True)
