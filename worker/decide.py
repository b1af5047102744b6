"""From one OSCU call's outcome to what happens to the job: pure functions, tested by table.

:func:`decide` reads the call's outcome; when the answer would end the job but an earlier
attempt may have put its number at KRA, it returns :class:`Verify` instead, the drain asks
KRA what it holds under the number (worker/recovery.py) and :func:`settle` decides from that.
The drain ``match``es on the final :data:`Decision`. The rules carry invariants 2 and 5:

- once an attempt may have reached KRA, the number stays with the job whatever a later
  answer says (910, 90x, sequence, attempts exhausted, duplicate); it is released only when
  KRA's lookup says nothing is there, or it holds another document there;
- a duplicate answer is "ours" only when KRA's lookup shows our trdInvcNo under the number;
- 921 on a first send means KRA's counter is ahead (park); 994 on a first send means the
  producer submitted the same trader invoice twice (dead, number released);
- a systemic rejection (worker/systemic.py) parks the branch, holding the job and its number.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.jobs import JobKind, JobState
from schemas.result_codes import ResultCode
from schemas.settings import RetrySettings
from worker.backoff import retry_delay
from worker.oscu.outcome import CallOutcome, OutcomeKind
from worker.systemic import BRANCH, Expectation, expectation, systemic_rule


@dataclass(frozen=True, slots=True)
class Accept:
    #: True when KRA answered "duplicate" (or refused a resend) and its lookup showed our sale.
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
    #: A 994 on a first send: name the job of ours that holds the same trader invoice.
    names_holder: bool = False


@dataclass(frozen=True, slots=True)
class Park:
    reason: str
    release_number: bool
    #: KRA's next number as its answer stated it, recorded on the branch for set-next.
    expected: Expectation | None = None


Decision = Accept | Retry | Dead | Park


@dataclass(frozen=True, slots=True)
class Verify:
    """The answer would end the job, but an earlier attempt may have put its number at KRA:
    ask KRA what it holds under the number, then :func:`settle`."""

    code: str
    message: str
    #: What stands when KRA answers that it holds nothing under the number.
    if_absent: Dead | Park
    #: KRA answered 921 to a resend: a host without the lookup leaves it accepted.
    accept_unverified: bool = False


class Held(StrEnum):
    """What KRA's lookup said it holds under the job's number."""

    OURS = "ours"
    OTHER = "other"  # another document (its trdInvcNo differs from ours)
    NOTHING = "nothing"  # 001: no such number
    UNCLEAR = "unclear"  # a document without a trdInvcNo to compare
    UNREACHABLE = "unreachable"  # the lookup failed, or the host has none


@dataclass(frozen=True, slots=True)
class Holding:
    held: Held
    theirs: str | None = None
    ours: str | None = None
    #: Why the lookup gave no answer (UNREACHABLE).
    detail: str = ""
    #: UNREACHABLE but worth asking again shortly (timeout, 5xx, rate limit).
    retryable: bool = False
    retry_after_s: float | None = None
    #: UNREACHABLE because the host offers no lookup for this kind (or it is switched off).
    unsupported: bool = False


#: Kinds whose writes are upserts: a duplicate is harmless and means recorded.
IDEMPOTENT_KINDS = frozenset({JobKind.ITEM, JobKind.STOCK_MASTER})
SET_NEXT = f"etims-relay branch set-next {BRANCH}"


def decide(
    kind: JobKind,
    outcome: CallOutcome,
    *,
    attempt: int,
    maybe_recorded: bool,
    number: int | None,
    retry: RetrySettings,
    age_s: float = float("inf"),
) -> Decision | Verify:
    """Decide the job's next state after its ``attempt``-th call (1-based), ``age_s`` after
    the job was enqueued. ``maybe_recorded``: this or an earlier attempt may have reached KRA."""
    exhausted = attempt >= retry.max_attempts and age_s >= retry.give_up_after_s
    code = outcome.result_code or ""
    message = outcome.message or outcome.kind.value
    match outcome.kind:
        case OutcomeKind.ACCEPTED | OutcomeKind.EMPTY:
            return Accept()
        case OutcomeKind.DUPLICATE:
            return _duplicate(kind, code, message, maybe_recorded, number)
        case OutcomeKind.SEQUENCE | OutcomeKind.REJECTED | OutcomeKind.AUTH:
            return _refused(kind, outcome, code, message, attempt, maybe_recorded, number, retry)
        case OutcomeKind.RATE_LIMITED | OutcomeKind.TRANSIENT:
            if exhausted:
                return _exhausted(code, message, attempt, maybe_recorded, number)
            reason = "rate_limited" if outcome.kind is OutcomeKind.RATE_LIMITED else "transient"
            return _retry(JobState.RETRY_WAIT, attempt, retry, outcome, reason)
        case OutcomeKind.UNKNOWN:
            if exhausted:
                return _exhausted(code, message, attempt, True, number)
            return _retry(JobState.UNKNOWN, attempt, retry, outcome, "unknown")


def _duplicate(
    kind: JobKind, code: str, message: str, maybe_recorded: bool, number: int | None
) -> Decision | Verify:
    """921/994. Ours only if KRA's lookup shows our sale; on a first send, 921 means KRA's
    counter is ahead and 994 that the producer sent the same trader invoice twice."""
    counter = kind.numbered_by
    if kind in IDEMPOTENT_KINDS:
        return Accept(via_duplicate=True)
    if maybe_recorded and number is not None:
        return Verify(
            code,
            message,
            Park(
                f"KRA answered {code} ({message}) to a resend of {counter} {number}, but its "
                f"lookup shows nothing of ours under {counter} {number}; the job and its "
                f"number are held. Check KRA, then skip the job (etims-relay skip JOB "
                f"--reason TEXT) or {SET_NEXT}",
                release_number=False,
            ),
            accept_unverified=code == ResultCode.ALREADY_DECLARED,
        )
    if code == ResultCode.OVERLAPPED and kind in (JobKind.SALE, JobKind.CREDIT_NOTE):
        return Dead(code, message, release_number=True, names_holder=True)
    return Park(
        f"KRA already holds {counter} {number} (answered {code} to its first send: "
        f"{message}): KRA's counter is ahead of ours. Find KRA's next number and run "
        f"{SET_NEXT} --{_flag(counter)} N",
        release_number=True,
    )


def _refused(
    kind: JobKind,
    outcome: CallOutcome,
    code: str,
    message: str,
    attempt: int,
    maybe_recorded: bool,
    number: int | None,
    retry: RetrySettings,
) -> Decision | Verify:
    """A refusal: a sequence answer naming KRA's next number parks (set-next), a systemic
    one parks holding the number, any other ends the job; each is checked against KRA
    first when an earlier attempt may have put the number there."""
    final: Dead | Park
    expects = expectation(message, kind.numbered_by)
    rule = systemic_rule(outcome)
    if expects is not None:
        final = _sequence_park(expects, number, code, message)
    elif rule is not None:
        final = Park(
            f"KRA refuses every job of this branch ({rule.name}): {code} {message}. "
            f"The job keeps its number. Fix: {rule.fix}",
            release_number=False,
        )
    elif outcome.kind is OutcomeKind.SEQUENCE and attempt < retry.sequence_max_attempts:
        return _retry(JobState.RETRY_WAIT, attempt, retry, outcome, "sequence")
    elif outcome.kind is OutcomeKind.SEQUENCE:
        final = Dead(code, f"{message} (after {attempt} attempts)", release_number=True)
    else:
        final = Dead(code, message, release_number=True)
    if maybe_recorded and number is not None:
        return Verify(code, message, final)
    return final


def settle(
    verify: Verify,
    holding: Holding,
    *,
    counter: str | None,
    number: int | None,
    attempt: int,
    retry: RetrySettings,
) -> Decision:
    """The decision once KRA said what it holds under the number of a maybe-sent job."""
    match holding.held:
        case Held.OURS:
            return Accept(via_duplicate=True)
        case Held.OTHER:
            return Park(
                f"KRA holds {counter} {number} for another document (trdInvcNo "
                f"{holding.theirs}; ours is {holding.ours}): our counter is behind KRA's. "
                f"Find KRA's next number and run {SET_NEXT} --{_flag(counter)} N",
                release_number=True,
            )
        case Held.NOTHING:
            return verify.if_absent
        case Held.UNCLEAR:
            return Park(
                f"KRA answered {verify.code} ({verify.message}); an earlier attempt of "
                f"{counter} {number} may have reached KRA, and KRA's lookup of it shows a "
                f"document without a trdInvcNo to compare: the number is held. Check KRA, "
                f"then skip the job or {SET_NEXT}",
                release_number=False,
            )
        case Held.UNREACHABLE:
            if holding.unsupported and verify.accept_unverified:
                return Accept(via_duplicate=True)
            if holding.retryable and attempt < 2 * retry.max_attempts:
                # Ask again shortly: the resend is answered the same way, harmlessly.
                delay = retry_delay(
                    attempt, base_s=retry.base_s, cap_s=retry.cap_s,
                    retry_after_s=holding.retry_after_s,
                )  # fmt: skip
                return Retry(JobState.UNKNOWN, delay, "receipt_lookup")
            return Park(
                f"KRA answered {verify.code} ({verify.message}); an earlier attempt of "
                f"{counter} {number} may have reached KRA and KRA could not be asked what it "
                f"holds ({holding.detail}): the job and its number are held. "
                f"{_if_absent_hint(verify)}",
                release_number=False,
                expected=verify.if_absent.expected if isinstance(verify.if_absent, Park) else None,
            )


def _if_absent_hint(verify: Verify) -> str:
    if isinstance(verify.if_absent, Park):
        return f"Otherwise: {verify.if_absent.reason}"
    return (
        "If KRA holds our sale under that number, unpark the branch (etims-relay branch "
        "unpark) to resend it; if not, skip the job"
    )


def _sequence_park(expects: Expectation, number: int | None, code: str, message: str) -> Park:
    ahead = "ahead of" if number is None or expects.expected > number else "behind"
    return Park(
        f"KRA expects {expects.counter} {expects.expected} next (answered {code}: {message}); "
        f"we sent {number}: KRA's counter is {ahead} ours. Run {SET_NEXT} "
        f"--{_flag(expects.counter)} {expects.expected}",
        release_number=True,
        expected=expects,
    )


def _flag(counter: str | None) -> str:
    return "sar" if counter == "sarNo" else "invc"


def _retry(
    state: JobState, attempt: int, retry: RetrySettings, outcome: CallOutcome, reason: str
) -> Retry:
    delay = retry_delay(
        attempt, base_s=retry.base_s, cap_s=retry.cap_s, retry_after_s=outcome.retry_after_s
    )
    return Retry(state, delay, reason)


def _exhausted(
    code: str, message: str, attempt: int, maybe_recorded: bool, number: int | None
) -> Decision | Verify:
    gave_up = Dead(code or "ATTEMPTS", f"gave up after {attempt} attempts: {message}", True)
    if not maybe_recorded:
        return gave_up
    if number is None:
        return Park(
            f"outcome still unknown after {attempt} attempts ({message}); the job may be "
            "recorded at KRA: check it, then replay or skip",
            release_number=False,
        )
    return Verify(code or "ATTEMPTS", f"outcome unknown after {attempt} attempts", gave_up)
