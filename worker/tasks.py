"""Celery task bodies: thin shells over drain() and sweep(). Producers never import this."""

from __future__ import annotations

from typing import Any

from celery import shared_task

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

#: A branch due within this many seconds gets a delayed message; later ones wait for the
#: sweeper (never a long countdown: invariant 6).
MAX_COUNTDOWN_S = 5.0


@shared_task(name=DRAIN_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def drain_task(branch_id: int) -> dict[str, Any]:
    runtime = current_runtime()
    report = drain(int(branch_id), runtime.drain_context())
    if report.status == "more":
        runtime.waker.wake([report.branch_id])
    elif report.status == "waiting" and report.due_in_s is not None:
        if report.due_in_s <= MAX_COUNTDOWN_S:
            runtime.waker.wake([report.branch_id], countdown_s=report.due_in_s)
    if report.woken:
        runtime.waker.wake(report.woken - {report.branch_id})
    return {"branch_id": report.branch_id, "status": report.status, "sent": report.sent}


@shared_task(name=SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def sweep_task() -> int:
    runtime = current_runtime()
    return len(sweep(runtime.engine, runtime.waker))


@shared_task(name=SYNC_NOTICES_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def sync_notices_task() -> int:
    runtime = current_runtime()
    return sum(r.stored for r in sync_all(runtime.engine, runtime.client, runtime.devices))


@shared_task(name=SYNC_CODES_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def sync_codes_task() -> int:
    """Beat (daily): each device's tax rates from KRA; a branch that gets its first rates is
    unparked, and the sweeper wakes it."""
    runtime = current_runtime()
    results = codes.sync_all(runtime.engine, runtime.client, runtime.devices)
    return sum(r.outcome == "accepted" for r in results)


@shared_task(name=WEBHOOK_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def deliver_webhooks_task() -> int:
    """Beat: POST due result webhooks (claims make concurrent runs safe)."""
    runtime = current_runtime()
    report = deliver_webhooks(
        runtime.engine, webhook_fernet(runtime.settings), runtime.settings.webhooks
    )
    return report.delivered
