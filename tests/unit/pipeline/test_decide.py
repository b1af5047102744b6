"""Every outcome class -> the job's next state (schemas.jobs; README, invariants 2 and 5)."""

from __future__ import annotations

import pytest

from schemas.jobs import JobKind, JobState
from schemas.settings import RetrySettings
from worker.backoff import backoff_delay, retry_delay
from worker.decide import (
    Accept,
    Dead,
    Held,
    Holding,
    Park,
    Retry,
    Verify,
    decide,
    settle,
)
from worker.oscu.outcome import CallOutcome, OutcomeKind

RETRY = RetrySettings(base_s=0.5, cap_s=60, max_attempts=5, sequence_max_attempts=3)


def outcome(kind: OutcomeKind, code: str | None = None, **kw) -> CallOutcome:
    return CallOutcome(kind, "saveTrnsSalesOsdc", code, f"KRA says {code}", **kw)


#: (outcome kind, code, attempt, maybe_recorded, decision). A maybe-sent job is never ended
#: by the answer alone: it is verified against KRA first (Verify), then settled.
TABLE = [
    (OutcomeKind.ACCEPTED, "000", 1, False, Accept),
    (OutcomeKind.EMPTY, "001", 1, False, Accept),
    (OutcomeKind.DUPLICATE, "921", 2, True, Verify),
    (OutcomeKind.DUPLICATE, "994", 2, True, Verify),
    (OutcomeKind.DUPLICATE, "921", 1, False, Park),
    (OutcomeKind.DUPLICATE, "994", 1, False, Dead),
    (OutcomeKind.SEQUENCE, "922", 1, False, Retry),
    (OutcomeKind.SEQUENCE, "922", 3, False, Dead),
    (OutcomeKind.SEQUENCE, "922", 3, True, Verify),
    (OutcomeKind.RATE_LIMITED, "990", 1, False, Retry),
    (OutcomeKind.TRANSIENT, "999", 1, False, Retry),
    (OutcomeKind.TRANSIENT, None, 5, False, Dead),
    (OutcomeKind.TRANSIENT, None, 5, True, Verify),
    (OutcomeKind.UNKNOWN, None, 1, True, Retry),
    (OutcomeKind.UNKNOWN, None, 5, True, Verify),
    (OutcomeKind.REJECTED, "910", 1, False, Dead),
    (OutcomeKind.REJECTED, "910", 2, True, Verify),
    (OutcomeKind.REJECTED, "911", 2, True, Verify),
    (OutcomeKind.AUTH, "901", 1, False, Park),
    (OutcomeKind.AUTH, "901", 2, True, Verify),
]


@pytest.mark.parametrize(("kind", "code", "attempt", "maybe_recorded", "expected"), TABLE)
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


def test_a_number_that_may_be_at_kra_is_never_released_on_the_answer_alone() -> None:
    """Whatever the answer, a maybe-sent job is checked against KRA before it ends."""
    answers = [
        outcome(OutcomeKind.UNKNOWN),
        outcome(OutcomeKind.TRANSIENT),
        outcome(OutcomeKind.RATE_LIMITED),
        outcome(OutcomeKind.REJECTED, "910"),
        outcome(OutcomeKind.REJECTED, "911"),
        outcome(OutcomeKind.AUTH, "901"),
        outcome(OutcomeKind.SEQUENCE, "922"),
        outcome(OutcomeKind.DUPLICATE, "921"),
        outcome(OutcomeKind.DUPLICATE, "994"),
        CallOutcome(
            OutcomeKind.REJECTED, "x", "910", "Invalid invcNo sequence, expected: 4 but found: 3"
        ),
    ]
    for answer in answers:
        decision = decide(
            JobKind.SALE, answer, attempt=99, maybe_recorded=True, number=3, retry=RETRY
        )
        assert isinstance(decision, Verify), (answer, decision)


#: (what KRA holds, duplicate answer?, settled decision, number released?)
SETTLE_TABLE = [
    (Holding(Held.OURS, "T1", "T1"), "910", Accept, None),
    (Holding(Held.OURS, "T1", "T1"), "921", Accept, None),
    (Holding(Held.OTHER, "X9", "T1"), "910", Park, True),
    (Holding(Held.OTHER, "X9", "T1"), "994", Park, True),
    (Holding(Held.NOTHING, ours="T1"), "910", Dead, True),
    (Holding(Held.NOTHING, ours="T1"), "901", Park, False),
    (Holding(Held.NOTHING, ours="T1"), "921", Park, False),
    (Holding(Held.NOTHING, ours="T1"), "994", Park, False),
    (Holding(Held.UNCLEAR, ours="T1"), "921", Park, False),
    (Holding(Held.UNCLEAR, ours="T1"), "910", Park, False),
    (Holding(Held.UNREACHABLE, detail="HTTP 500", retryable=True), "910", Retry, None),
    (Holding(Held.UNREACHABLE, detail="no lookup", unsupported=True), "910", Park, False),
    (Holding(Held.UNREACHABLE, detail="no lookup", unsupported=True), "994", Park, False),
    (Holding(Held.UNREACHABLE, detail="no lookup", unsupported=True), "921", Accept, None),
]

_ANSWER = {
    "910": OutcomeKind.REJECTED,
    "901": OutcomeKind.AUTH,
    "921": OutcomeKind.DUPLICATE,
    "994": OutcomeKind.DUPLICATE,
}


@pytest.mark.parametrize(("holding", "code", "expected", "released"), SETTLE_TABLE)
def test_what_kra_holds_settles_a_maybe_sent_job(holding, code, expected, released) -> None:
    verify = decide(
        JobKind.SALE, outcome(_ANSWER[code], code), attempt=2, maybe_recorded=True, number=5,
        retry=RETRY,
    )  # fmt: skip
    assert isinstance(verify, Verify)
    decision = settle(verify, holding, counter="invcNo", number=5, attempt=2, retry=RETRY)
    assert isinstance(decision, expected), decision
    if released is not None:
        assert decision.release_number is released


def test_a_lookup_that_keeps_failing_parks_with_the_number_held() -> None:
    verify = decide(
        JobKind.SALE, outcome(OutcomeKind.REJECTED, "910"), attempt=2, maybe_recorded=True,
        number=5, retry=RETRY,
    )  # fmt: skip
    assert isinstance(verify, Verify)
    failing = Holding(Held.UNREACHABLE, detail="HTTP 503", retryable=True)
    last = settle(verify, failing, counter="invcNo", number=5, attempt=10, retry=RETRY)
    assert isinstance(last, Park) and not last.release_number
    assert "invcNo 5" in last.reason and "HTTP 503" in last.reason


def test_a_duplicate_on_a_first_send_is_told_apart_by_its_code() -> None:
    """921: KRA's counter is ahead (park, set-next). 994: the producer sent the same trader
    invoice twice (dead with KRA's words, number released, our other job named)."""
    taken = decide(
        JobKind.SALE, outcome(OutcomeKind.DUPLICATE, "921"), attempt=1, maybe_recorded=False,
        number=12, retry=RETRY,
    )  # fmt: skip
    assert isinstance(taken, Park) and taken.release_number
    assert "counter is ahead" in taken.reason and "921" in taken.reason
    overlapped = decide(
        JobKind.SALE, outcome(OutcomeKind.DUPLICATE, "994"), attempt=1, maybe_recorded=False,
        number=12, retry=RETRY,
    )  # fmt: skip
    assert isinstance(overlapped, Dead)
    assert overlapped.release_number and overlapped.names_holder
    assert overlapped.code == "994" and overlapped.message == "KRA says 994"


@pytest.mark.parametrize(
    ("code", "message", "rule"),
    [
        ("901", "It is not a valid device", "device or credentials refused"),
        ("910", "Rule taxRtE failed: Tax rate mismatch. Expected: 0.00, Found: 8", "tax rate"),
        ("910", "This device has been deactivated", "device deactivated"),
    ],
)
def test_a_systemic_refusal_parks_holding_the_number(code, message, rule) -> None:
    kind = OutcomeKind.AUTH if code == "901" else OutcomeKind.REJECTED
    answer = CallOutcome(kind, "saveTrnsSalesOsdc", code, message)
    decision = decide(JobKind.SALE, answer, attempt=1, maybe_recorded=False, number=4, retry=RETRY)
    assert isinstance(decision, Park) and not decision.release_number
    assert message in decision.reason and rule in decision.reason
    assert "etims-relay" in decision.reason  # the command that fixes it


def test_a_sequence_answer_names_kras_next_number() -> None:
    answer = CallOutcome(
        OutcomeKind.REJECTED, "saveTrnsSalesOsdc", "910",
        "Invalid invcNo sequence, expected: 43 but found: 41",
    )  # fmt: skip
    decision = decide(JobKind.SALE, answer, attempt=1, maybe_recorded=False, number=41, retry=RETRY)
    assert isinstance(decision, Park) and decision.release_number
    assert decision.expected is not None and decision.expected.expected == 43
    assert "set-next {branch} --invc 43" in decision.reason
    stock = CallOutcome(
        OutcomeKind.REJECTED, "saveStockMaster", "910", "rsdQty mismatch. Expected: 4 but found: 3"
    )
    assert isinstance(
        decide(JobKind.STOCK_MASTER, stock, attempt=1, maybe_recorded=False, number=None,
               retry=RETRY),
        Dead,
    )  # fmt: skip


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
    """921 on a first send: KRA's counter is ahead of ours."""
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


def test_another_document_under_the_number_parks_naming_both() -> None:
    verify = decide(
        JobKind.SALE, outcome(OutcomeKind.REJECTED, "910"), attempt=2, maybe_recorded=True,
        number=5, retry=RETRY,
    )  # fmt: skip
    assert isinstance(verify, Verify)
    other = Holding(Held.OTHER, theirs="POS2-77", ours="T1")
    decision = settle(verify, other, counter="invcNo", number=5, attempt=2, retry=RETRY)
    assert isinstance(decision, Park)
    assert (
        "POS2-77" in decision.reason and "T1" in decision.reason and "invcNo 5" in decision.reason
    )
