"""When to try a failed job or webhook delivery again: full-jitter exponential backoff, capped.

The math is tenacity's ``wait_random_exponential`` (uniform between 0 and
``min(cap, base * 2**(attempt-1))``); we only feed it an attempt number, because the retry
itself is a row in the database (``next_attempt_at``), never a sleeping task (invariant 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import wait_random_exponential


@dataclass(frozen=True, slots=True)
class _AttemptState:
    """The one attribute tenacity's wait strategies read from a RetryCallState."""

    attempt_number: int


def backoff_delay(attempt: int, *, base_s: float, cap_s: float) -> float:
    """Seconds to wait after the ``attempt``-th failure (1-based)."""
    strategy = wait_random_exponential(multiplier=base_s, max=cap_s)
    return float(strategy(_AttemptState(max(1, attempt))))  # type: ignore[arg-type]


def retry_delay(
    attempt: int, *, base_s: float, cap_s: float, retry_after_s: float | None = None
) -> float:
    """Backoff, but never sooner than the server asked (Retry-After, 990)."""
    delay = backoff_delay(attempt, base_s=base_s, cap_s=cap_s)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, cap_s))
    return delay
