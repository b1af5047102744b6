"""Every outcome class -> the job's next state (DESIGN.md job states, invariants 2 and 5)."""

from __future__ import annotations

import pytest

from etims_relay.settings import RetrySettings
from schemas.jobs import JobKind, JobState
from worker.backoff import backoff_delay, retry_delay
from worker.decide import Accept, Dead, Park, Retry, decide
from worker.oscu.outcome import CallOutcome, OutcomeKind

RETRY = RetrySettings(base_s=0.5, cap_s=60, max_attempts=5, sequence_max_attempts=3)


def outcome(kind: OutcomeKind, code: str | None = None, **kw) -> CallOutcome:
    return CallOutcome(kind, "saveTrnsSalesOsdc", code, f"KRA says {code}", **kw)


@pytest.mark.parametrize(
    ("kind", "code", "attempt", "maybe_recorded", "expected"),
    [
        (OutcomeKind.ACCEPTED, "000", 1, False, Accept),
        (OutcomeKind.EMPTY, "001", 1, False, Accept),
        (OutcomeKind.DUPLICATE, "921", 2, True, Accept),
        (OutcomeKind.DUPLICATE, "994", 1, False, Park),
        (OutcomeKind.SEQUENCE, "922", 1, False, Retry),
        (OutcomeKind.SEQUENCE, "922", 3, False, Dead),
        (OutcomeKind.RATE_LIMITED, "990", 1, False, Retry),
        (OutcomeKind.TRANSIENT, "999", 1, False, Retry),
        (OutcomeKind.TRANSIENT, None, 5, False, Dead),
        (OutcomeKind.TRANSIENT, None, 5, True, Park),
        (OutcomeKind.UNKNOWN, None, 1, True, Retry),
        (OutcomeKind.UNKNOWN, None, 5, True, Park),
        (OutcomeKind.REJECTED, "910", 1, False, Dead),
        (OutcomeKind.REJECTED, "910", 2, True, Dead),
        (OutcomeKind.AUTH, "901", 1, False, Dead),
    ],
)
def test_outcome_to_decision(kind, code, attempt, maybe_recorded, expected) -> None:
    decision = decide(
        JobKind.SALE,
        outcome(kind, code),
        attempt=attempt,
        maybe_recorded=maybe_recorded,
        number=7,
        retry=RETRY,
    )
    assert isinstance(decision, expected)


def test_every_outcome_kind_is_decided() -> None:
    for kind in OutcomeKind:
        decide(
            JobKind.SALE, outcome(kind, "x"), attempt=1, maybe_recorded=False, number=1, retry=RETRY
        )


def test_unknown_waits_in_unknown_state_transient_in_retry_wait() -> None:
    unknown = decide(
        JobKind.SALE,
        outcome(OutcomeKind.UNKNOWN),
        attempt=1,
        maybe_recorded=True,
        number=1,
        retry=RETRY,
    )
    transient = decide(
        JobKind.SALE,
        outcome(OutcomeKind.TRANSIENT),
        attempt=1,
        maybe_recorded=False,
        number=1,
        retry=RETRY,
    )
    assert isinstance(unknown, Retry) and unknown.state is JobState.UNKNOWN
    assert isinstance(transient, Retry) and transient.state is JobState.RETRY_WAIT


def test_a_number_that_may_be_at_kra_is_never_released() -> None:
    for kind in (OutcomeKind.UNKNOWN, OutcomeKind.TRANSIENT, OutcomeKind.RATE_LIMITED):
        decision = decide(
            JobKind.SALE, outcome(kind), attempt=99, maybe_recorded=True, number=3, retry=RETRY
        )
        assert isinstance(decision, Park) and not decision.release_number


def test_duplicates_of_upserts_mean_recorded() -> None:
    for kind in (JobKind.ITEM, JobKind.STOCK_MASTER):
        decision = decide(
            kind,
            outcome(OutcomeKind.DUPLICATE, "994"),
            attempt=1,
            maybe_recorded=False,
            number=None,
            retry=RETRY,
        )
        assert isinstance(decision, Accept)


def test_park_message_tells_the_operator_what_to_do() -> None:
    decision = decide(
        JobKind.SALE,
        outcome(OutcomeKind.DUPLICATE, "921"),
        attempt=1,
        maybe_recorded=False,
        number=12,
        retry=RETRY,
    )
    assert isinstance(decision, Park)
    assert "invcNo 12" in decision.reason and "set-next" in decision.reason


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    for attempt in range(1, 12):
        delays = [backoff_delay(attempt, base_s=0.5, cap_s=8) for _ in range(200)]
        assert all(0 <= d <= min(8, 0.5 * 2 ** (attempt - 1)) for d in delays)
    assert max(backoff_delay(10, base_s=0.5, cap_s=8) for _ in range(500)) > 4  # jitter spreads
    assert retry_delay(1, base_s=0.5, cap_s=60, retry_after_s=30) >= 30
    assert retry_delay(1, base_s=0.5, cap_s=60, retry_after_s=3600) <= 60


def test_an_outage_of_hours_is_waited_out_not_dead_lettered() -> None:
    """Many failed attempts within the give-up window keep the job retrying (backlog)."""
    for kind in (OutcomeKind.TRANSIENT, OutcomeKind.UNKNOWN, OutcomeKind.RATE_LIMITED):
        for maybe_recorded in (False, True):
            decision = decide(
                JobKind.SALE,
                outcome(kind),
                attempt=500,
                maybe_recorded=maybe_recorded,
                number=3,
                retry=RETRY,
                age_s=6 * 3600,
            )
            assert isinstance(decision, Retry), (kind, maybe_recorded, decision)
