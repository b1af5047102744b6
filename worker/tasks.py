"""Celery task bodies: thin shells over drain() and sweep(). Producers never import this."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from celery import shared_task
from sqlalchemy.exc import TimeoutError as PoolTimeout

from worker import codes
from worker.drain import drain
from worker.notices import sync_all
from worker.runtime import current_runtime
from worker.sweep import sweep
from worker.wake import (
    DRAIN_TASK,
    SWEEP_TASK,
    SYNC_CODES_TASK,
    SYNC_NOTICES_TASK,
    WEBHOOK_TASK,
)
from worker.webhooks import deliver_webhooks, webhook_fernet

log = logging.getLogger("etims_relay.worker")

_Result = TypeVar("_Result")

#: A branch due within this many seconds gets a delayed message; later ones wait for the
#: sweeper (never a long countdown: invariant 6).
MAX_COUNTDOWN_S = 5.0


@shared_task(name=DRAIN_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def drain_task(branch_id: int) -> dict[str, Any]:
    runtime = current_runtime()
    try:
        report = drain(int(branch_id), runtime.drain_context())
    except PoolTimeout:
        # Every pooled connection stayed busy for ETIMS_DATABASE__POOL_TIMEOUT_S: an
        # overloaded pool, not a fault of this branch. The drain did not queue for the pool
        # once more to hand its lease back: a lease it took runs out on its own (until then
        # this wake finds the branch busy). Wake the branch again shortly, spread out so
        # that the retries do not all queue for the pool at once. The sweeper re-wakes it
        # as well.
        countdown = random.uniform(1.0, MAX_COUNTDOWN_S)
        log.warning(
            "branch %s: no database connection within %g s (pool of %d+%d busy); "
            "retrying in %.1f s",
            branch_id,
            runtime.settings.database.pool_timeout_s,
            runtime.settings.database.pool_size,
            runtime.settings.database.max_overflow,
            countdown,
            extra={"event": "drain_pool_timeout", "branch_id": int(branch_id)},
        )
        runtime.waker.wake([int(branch_id)], countdown_s=countdown)
        return {"branch_id": int(branch_id), "status": "pool_timeout", "sent": 0}
    if report.status == "more":
        runtime.waker.wake([report.branch_id])
    elif report.status == "waiting" and report.due_in_s is not None:
        if report.due_in_s <= MAX_COUNTDOWN_S:
            runtime.waker.wake([report.branch_id], countdown_s=report.due_in_s)
    if report.woken:
        runtime.waker.wake(report.woken - {report.branch_id})
    return {"branch_id": report.branch_id, "status": report.status, "sent": report.sent}


def _skip_when_pool_busy(
    empty: _Result,
) -> Callable[[Callable[[], _Result]], Callable[[], _Result]]:
    """A beat task that finds every database connection busy skips this run (one warning line,
    no traceback): its next beat does the work."""

    def decorate(task: Callable[[], _Result]) -> Callable[[], _Result]:
        @wraps(task)
        def run() -> _Result:
            try:
                return task()
            except PoolTimeout:
                log.warning(
                    "%s: no database connection within the pool timeout; skipped until the "
                    "next beat",
                    task.__name__,
                    extra={"event": "beat_pool_timeout", "task": task.__name__},
                )
                return empty

        return run

    return decorate


@shared_task(name=SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
@_skip_when_pool_busy(0)
def sweep_task() -> int:
    runtime = current_runtime()
    return len(sweep(runtime.engine, runtime.waker))


@shared_task(name=SYNC_NOTICES_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
@_skip_when_pool_busy(0)
def sync_notices_task() -> int:
    runtime = current_runtime()
    return sum(r.stored for r in sync_all(runtime.engine, runtime.client, runtime.devices))


@shared_task(name=SYNC_CODES_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
@_skip_when_pool_busy(0)
def sync_codes_task() -> int:
    """Beat (daily): each device's tax rates from KRA; a branch that gets its first rates is
    unparked, and the sweeper wakes it."""
    runtime = current_runtime()
    results = codes.sync_all(runtime.engine, runtime.client, runtime.devices)
    return sum(r.outcome == "accepted" for r in results)


@shared_task(name=WEBHOOK_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
@_skip_when_pool_busy(0)
def deliver_webhooks_task() -> int:
    """Beat: POST due result webhooks (claims make concurrent runs safe)."""
    runtime = current_runtime()
    report = deliver_webhooks(
        runtime.engine, webhook_fernet(runtime.settings), runtime.settings.webhooks
    )
    return report.delivered
