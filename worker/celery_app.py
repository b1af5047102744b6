"""The Celery application: a doorbell, configured per DESIGN.md "Celery settings that matter".

Celery carries only "branch N may have work" messages; the outbox is the system of record,
so there is no result backend, acks are late, a worker lost mid-task gives its message back,
and no task sleeps longer than a few seconds (a countdown beyond the Redis visibility
timeout would run twice).
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from etims_relay.settings import Settings
from worker.wake import QUEUE, SWEEP_TASK, SYNC_CODES_TASK, SYNC_NOTICES_TASK, WEBHOOK_TASK

#: Above the longest drain (max_seconds + one OSCU round trip), so Redis does not redeliver
#: a message whose task is still running.
VISIBILITY_TIMEOUT_S = 900


def create_app(settings: Settings, broker_url: str) -> Celery:
    app = Celery("etims-relay", broker=broker_url, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        # DESIGN.md lists this, but the threads pool cannot kill a job (it logs CRITICAL
        # NotImplementedError on every broker loss). Harmless to leave running: the drain
        # finishes, its ack fails, the redelivered message finds the lease or no work.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        task_default_queue=QUEUE,
        task_time_limit=settings.drain.max_seconds + 3 * settings.oscu.read_timeout_s + 60,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_s},
            "deliver-webhooks": {"task": WEBHOOK_TASK, "schedule": settings.webhooks.interval_s},
            # KRA notices per device (worker/notices.py); task name in worker/tasks.py.
            "sync-notices": {
                "task": SYNC_NOTICES_TASK,
                "schedule": settings.notices.sync_interval_s,
            },
            # KRA's code list per device: each branch's tax rates (worker/codes.py).
            "sync-codes": {"task": SYNC_CODES_TASK, "schedule": settings.codes.sync_interval_s},
        },
    )
    return app


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _fresh_connections_after_fork(**_: object) -> None:
    """A prefork child must not reuse the parent's DB or HTTP connections."""
    from worker.runtime import reset_runtime

    reset_runtime()
