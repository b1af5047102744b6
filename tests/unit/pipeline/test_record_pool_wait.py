"""KRA has answered: recording the answer waits out an empty pool while the lease holds, and
gives up (the job stays in_flight, to be resent as maybe-sent) once it would not."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from schemas.jobs import JobState
from worker.drain import _record, _Renewal
from worker.outbox.rows import Lease
from worker.outbox.writes import Recorded


class EmptyPool:
    """A store whose pool has no connection for the first ``busy`` records (each wait
    taking ``wait_s`` of the clock)."""

    def __init__(self, clock: list[float], busy: int, wait_s: float = 1.0) -> None:
        self.clock, self.busy, self.wait_s, self.tries = clock, busy, wait_s, 0

    def record(self, lease: Lease, record: Any) -> Recorded:
        self.tries += 1
        if self.tries <= self.busy:
            self.clock[0] += self.wait_s
            raise PoolTimeout("QueuePool limit reached")
        return Recorded(JobState.ACCEPTED)


def context(store: EmptyPool, clock: list[float]) -> Any:
    def sleep(seconds: float) -> None:
        clock[0] += seconds

    return SimpleNamespace(store=store, clock=lambda: clock[0], sleep=sleep)


LEASE = Lease(1, 7, "w")
RECORD = SimpleNamespace(job=SimpleNamespace(id=42), then=None)
#: the lease was last pushed out at t=0 for 20 s
RENEWAL = _Renewal(extended_at=0.0, every_s=0.0, ttl_s=20.0)


def test_a_result_is_recorded_once_the_pool_frees_a_connection() -> None:
    clock = [0.0]
    store = EmptyPool(clock, busy=3)

    recorded = _record(LEASE, RECORD, context(store, clock), RENEWAL)

    assert recorded.state is JobState.ACCEPTED
    assert store.tries == 4


def test_recording_gives_up_when_the_lease_would_run_out_before_the_next_try() -> None:
    clock = [0.0]
    store = EmptyPool(clock, busy=1000)

    with pytest.raises(PoolTimeout):
        _record(LEASE, RECORD, context(store, clock), RENEWAL)

    # tried for as long as the lease held, never after it ran out
    assert store.tries > 3
    assert clock[0] <= RENEWAL.expires_at + store.wait_s
