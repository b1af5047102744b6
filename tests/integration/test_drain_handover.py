"""How a drain hands its branch over when its budget runs out, at a worker with hundreds of
branches in flight: drains that started together end at different times, and the branch is
woken once (by the drain's own task), with the sweeper as the backup for a lost message.

Both were measured (bench/README.md, "2026-12-05, 12:00-13:30: in flight at 1 s"): drains
that all ended at once every ``max_seconds``, and the sweeper's second wake for each of them,
queued hundreds of broker messages ahead of the real ones."""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

from producers import builders as b
from tests.helpers import RecordingWaker
from tests.integration.pipeline_fixtures import Pipeline
from tests.integration.test_drain_behaviour import NOW, WATER, registered_stock, sales_of
from tests.workload import TIN
from worker.drain import DrainContext, drain
from worker.outbox import queries as q
from worker.runtime import install_runtime, reset_runtime
from worker.sweep import RESWEEP_AFTER_S, sweep
from worker.tasks import drain_task

ROUND_TRIP_S = 1.0
MAX_SECONDS = 10.0


class KraAtOneSecond:
    """The OSCU client, with a clock that moves one round trip per call."""

    def __init__(self, client: Any, clock: list[float]) -> None:
        self._client, self._clock = client, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        self._clock[0] += ROUND_TRIP_S
        return self._client.call(*args, **kwargs)


def stocked(pipeline: Pipeline) -> None:
    """The item registered, with its opening stock, at KRA before the test."""
    pipeline.enqueue(registered_stock())
    assert pipeline.drain().status == "idle"


def sales(count: int) -> list[dict[str, Any]]:
    return [b.sale(TIN, "00", f"s{n}", [WATER], trd_invc_no=f"T{n}", at=NOW) for n in range(count)]


def invoices_at_kra(pipeline: Pipeline) -> list[int]:
    return [invc_no for invc_no, _ in sales_of(pipeline)]


def branch_id(pipeline: Pipeline) -> int:
    with pipeline.runtime.engine.connect() as conn:
        return int(q.get_branch(conn, TIN, "00").id)


def test_drains_that_start_together_do_not_all_end_together(pipeline: Pipeline) -> None:
    # Given a long backlog, KRA answering in one second, and drains of at most 10 s
    stocked(pipeline)
    pipeline.enqueue(sales(120))
    pipeline.runtime.settings.drain.max_seconds = MAX_SECONDS
    clock = [1_000_000.0]
    base = pipeline.runtime.drain_context()
    ctx: DrainContext = dataclasses.replace(
        base,
        client=KraAtOneSecond(base.client, clock),  # type: ignore[arg-type]
        clock=lambda: clock[0],
        rng=random.Random(2026),  # the same draws on every run
    )

    # When twelve drains run, one after the other (as twelve branches started together)
    sent = [drain(branch_id(pipeline), ctx).sent for _ in range(12)]

    # Then each stopped within its budget, and they stopped after different numbers of
    # round trips, between half the budget and all of it
    assert all(MAX_SECONDS / 2 <= n <= MAX_SECONDS for n in sent), sent
    assert len(set(sent)) >= 3, sent
    # and nothing was sent twice or out of order on the way
    assert invoices_at_kra(pipeline) == list(range(1, sum(sent) + 1))


def test_a_drain_out_of_budget_is_woken_by_its_task_not_also_by_the_sweeper(
    pipeline: Pipeline,
) -> None:
    # Given a drain task that runs out of budget with work left
    stocked(pipeline)
    pipeline.enqueue(sales(5))
    pipeline.runtime.settings.drain.max_jobs = 2
    task_waker = RecordingWaker()
    pipeline.runtime.waker = task_waker
    install_runtime(pipeline.runtime)
    try:
        result = drain_task.run(branch_id(pipeline))
    finally:
        reset_runtime()
    now = time.time()

    # Then its task woke the branch again at once, once
    assert result["status"] == "more"
    assert task_waker.wakes == [([branch_id(pipeline)], None)]

    # And the sweeper right after it does not send a second wake for that branch
    sweeper = RecordingWaker()
    sweep(pipeline.runtime.engine, sweeper, now=now + 1)
    assert sweeper.wakes == [([], None)]

    # But if the task's message was lost, the sweeper wakes the branch once that would show
    sweep(pipeline.runtime.engine, sweeper, now=now + RESWEEP_AFTER_S + 1)
    assert sweeper.wakes[-1] == ([branch_id(pipeline)], None)
    # and the branch then drains to the end
    pipeline.runtime.settings.drain.max_jobs = 500
    assert pipeline.drain().status == "idle"
    assert invoices_at_kra(pipeline) == [1, 2, 3, 4, 5]


class KraWhileATillEnqueues:
    """The OSCU client; while KRA answers call ``during``, a till enqueues ``records``."""

    def __init__(self, client: Any, pipeline: Pipeline, during: int, records: list[Any]) -> None:
        self._client, self._pipeline = client, pipeline
        self._during, self._records, self._calls = during, records, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        self._calls += 1
        if self._calls == self._during:
            self._pipeline.enqueue(self._records)
        return self._client.call(*args, **kwargs)


def test_a_job_enqueued_during_the_last_call_earns_no_second_wake_either(
    pipeline: Pipeline,
) -> None:
    # Given a drain task that runs out of budget with work left, and a till that enqueues a
    # sale while KRA answers the drain's last call (after the head read it last saw)
    stocked(pipeline)
    pipeline.enqueue(sales(3))
    pipeline.runtime.settings.drain.max_jobs = 2
    late_sale = [b.sale(TIN, "00", "late", [WATER], trd_invc_no="T-late", at=NOW)]
    pipeline.runtime.client = KraWhileATillEnqueues(  # type: ignore[assignment]
        pipeline.runtime.client, pipeline, during=2, records=late_sale
    )
    task_waker = RecordingWaker()
    pipeline.runtime.waker = task_waker
    install_runtime(pipeline.runtime)
    try:
        result = drain_task.run(branch_id(pipeline))
    finally:
        reset_runtime()
    now = time.time()

    # Then its task woke the branch once, and the sweeper right after sends no second wake
    assert result["status"] == "more"
    assert task_waker.wakes == [([branch_id(pipeline)], None)]
    sweeper = RecordingWaker()
    sweep(pipeline.runtime.engine, sweeper, now=now + 1)
    assert sweeper.wakes == [([], None)]

    # But it is the backup once a lost message would show, and the late sale goes in order
    sweep(pipeline.runtime.engine, sweeper, now=now + RESWEEP_AFTER_S + 1)
    assert sweeper.wakes[-1] == ([branch_id(pipeline)], None)
    pipeline.runtime.settings.drain.max_jobs = 500
    assert pipeline.drain().status == "idle"
    assert invoices_at_kra(pipeline) == [1, 2, 3, 4]
