"""The doorbell: tell workers a branch has work. Producers may import this (not the tasks).

A wake is a Celery message carrying only a branch id. It may be lost, duplicated or
reordered without harm: the database is the truth, a duplicate drain finds the lease taken,
and the sweeper re-wakes any due branch whose message was lost. So a failed publish is
logged and swallowed: the job is already committed, and a checkout must never wait on the
broker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from celery import Celery

log = logging.getLogger("etims_relay.wake")

#: Task and queue names: the contract between producers and workers.
DRAIN_TASK = "etims_relay.drain"
SWEEP_TASK = "etims_relay.sweep"
WEBHOOK_TASK = "etims_relay.deliver_webhooks"
#: Beat task syncing KRA notices (worker/notices.py).
SYNC_NOTICES_TASK = "etims_relay.sync_notices"
SYNC_CODES_TASK = "etims_relay.sync_codes"
QUEUE = "etims"


class Waker(Protocol):
    def wake(self, branch_ids: Iterable[int], countdown_s: float | None = None) -> None: ...


class NullWaker:
    """For callers that rely on the sweeper alone (tests, bulk loads)."""

    def wake(self, branch_ids: Iterable[int], countdown_s: float | None = None) -> None:
        return None


class CeleryWaker:
    """Publishes drain messages by task name, so producers never import task bodies."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    @classmethod
    def for_broker(cls, broker_url: str) -> CeleryWaker:
        app = Celery("etims-relay-producer", broker=broker_url, set_as_current=False)
        app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_connection_retry_on_startup=False,
            broker_connection_timeout=2.0,
            broker_transport_options={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
            task_publish_retry=True,
            task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        )
        return cls(app)

    def wake(self, branch_ids: Iterable[int], countdown_s: float | None = None) -> None:
        for branch_id in sorted(set(branch_ids)):
            try:
                self._app.send_task(
                    DRAIN_TASK, args=[branch_id], queue=QUEUE, countdown=countdown_s
                )
            except Exception as exc:
                log.warning("wake of branch %s not sent (%s); the sweeper will", branch_id, exc)
