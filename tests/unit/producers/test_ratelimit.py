"""The intake's per-key rate limit (the ``limits`` library, in memory): what a till sees."""

from __future__ import annotations

from producers.intake.ratelimit import KeyRateLimiter


def test_a_key_over_its_budget_is_told_how_long_to_wait_and_other_keys_are_not() -> None:
    limiter = KeyRateLimiter("2/minute")
    assert [limiter.retry_after("till-03") for _ in range(2)] == [None, None]
    wait = limiter.retry_after("till-03")
    assert wait is not None and 1 <= wait <= 60
    assert limiter.retry_after("till-04") is None


def test_an_unreachable_counter_store_lets_the_request_through() -> None:
    # A till's sale matters more than the budget: the intake fails open
    limiter = KeyRateLimiter("1/minute", "redis://127.0.0.1:9/0")
    assert [limiter.retry_after("till-03") for _ in range(3)] == [None, None, None]
