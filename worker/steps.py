"""The values one job passes through in a drain: prepared, sent, decided.

They live apart from the drain so that the recorder (:mod:`worker.effects`) and receipt
recovery (:mod:`worker.recovery`) can read them without importing the drain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.decide import Decision
from worker.devices import Device
from worker.oscu.outcome import CallOutcome
from worker.outbox.rows import HeadJob


@dataclass(frozen=True, slots=True)
class Send:
    """A job marked in_flight (committed), ready for its call."""

    job: HeadJob
    body: dict[str, Any]
    #: the exact stored text of ``body``: what every resend repeats, and what attempts hash
    body_text: str
    number: int | None
    attempt: int
    #: an earlier attempt may have reached KRA (its number must never be handed on)
    maybe_recorded: bool
    #: when its start pushed the lease out (the time the new expiry counts from), if it did
    lease_extended_at: float | None = None


@dataclass(frozen=True, slots=True)
class LocalFailure:
    """The body could not be built: dead with the reason, or (no device, no tax rates) the
    branch parks until an operator fixes the cause. No call, no number taken."""

    job: HeadJob
    message: str
    park: bool = False


@dataclass(frozen=True, slots=True)
class Called:
    """A call was made: what it answered."""

    send: Send
    outcome: CallOutcome
    started: float
    device: Device
    #: including this call: it may have reached KRA
    maybe_recorded: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to record for one job: the final decision and what led to it."""

    job: HeadJob
    decision: Decision
    outcome: CallOutcome
    number: int | None
    maybe_recorded: bool
    #: None when no call was made (a local failure, no device)
    called: Called | None = None
    #: KRA's signature of an accepted sale (from the answer, or recovered by a lookup)
    receipt: dict[str, Any] | None = None
