"""The Celery application: a doorbell, configured per DESIGN.md "Celery settings that matter".

Celery carries only "branch N may have work" messages; the outbox is the system of record,
so there is no result backend, acks are late, a worker lost mid-task gives its message back,
and no task sleeps longer than a few seconds (a countdown beyond the Redis visibility
timeout would run twice).

Two ways to get the app, one configuration (:func:`celery_config`):

- ``etims-relay worker`` builds it with :func:`create_app` from the settings it loaded;
- ``celery -A worker.celery_app worker|inspect|events|flower`` uses the module-level
  :data:`app`. It reads the settings and resolves the broker (starting the embedded one if
  ``ETIMS_BROKER_URL`` is empty) only when Celery first reads its configuration, so importing
  this module has no side effect.

No ``task_time_limit``: the threads pool cannot stop a thread, so Celery would only log it.
A drain is bounded by itself instead: ``ETIMS_DRAIN__MAX_SECONDS`` and ``__MAX_JOBS`` end the
batch (it re-wakes its branch), and each OSCU call by the client's connect and read timeouts;
the branch lease (``ETIMS_DRAIN__LEASE_TTL_S``) lets another worker take over from one that
hangs anyway.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_init

from schemas.settings import Settings, get_settings
from worker.wake import QUEUE, SWEEP_TASK, SYNC_CODES_TASK, SYNC_NOTICES_TASK, WEBHOOK_TASK

__all__ = ["NODE_PREFIX", "VISIBILITY_TIMEOUT_S", "app", "celery_config", "create_app", "node_name"]

log = logging.getLogger("etims_relay.worker")

#: Above the longest drain (max_seconds + one OSCU round trip), so Redis does not redeliver
#: a message whose task is still running.
VISIBILITY_TIMEOUT_S = 900

#: Node names are ``etims@<host>`` (``etims-<suffix>@<host>`` with ``--name-suffix``): stable
#: across restarts, so Flower, exporters and ``celery inspect -d`` keep tracking one worker.
NODE_PREFIX = "etims"

#: Drain slots of a worker started by the celery CLI without ``-c`` (as ``etims-relay worker``).
DEFAULT_CONCURRENCY = 8


def node_name(suffix: str | None = None, host: str | None = None) -> str:
    """The Celery node name of a worker: ``etims[-suffix]@host``."""
    name = f"{NODE_PREFIX}-{suffix}" if suffix else NODE_PREFIX
    return f"{name}@{host or socket.gethostname()}"


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    """Every Celery setting etims-relay relies on, from its own settings."""
    events = settings.celery.events
    return {
        "broker_url": broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # The threads pool cannot kill a job (it logs CRITICAL NotImplementedError on every
        # broker loss). Harmless to leave running: the drain finishes, its ack fails, the
        # redelivered message finds the lease or no work.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S},
        "task_default_queue": QUEUE,
        # What `celery -A worker.celery_app worker` runs without options: the same pool as
        # `etims-relay worker` (drains block on HTTP, so threads, never prefork).
        "worker_pool": "threads",
        "worker_concurrency": DEFAULT_CONCURRENCY,
        "worker_hijack_root_logger": False,
        # Task events (Flower, celery-exporter): ETIMS_CELERY__EVENTS=true.
        "worker_send_task_events": events,
        "task_send_sent_event": events,
        "beat_schedule": {
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
    }


def create_app(settings: Settings, broker_url: str) -> Celery:
    """An app for settings already loaded (``etims-relay worker``, tests)."""
    celery = Celery("etims-relay", include=["worker.tasks"])
    celery.conf.update(celery_config(settings, broker_url))
    return celery


#: The app of ``celery -A worker.celery_app``; configured on first use (see module docstring).
#: Not made the current app on import: tests build their own with :func:`create_app`.
app = Celery("etims-relay", include=["worker.tasks"], set_as_current=False)


@app.on_configure.connect  # type: ignore[untyped-decorator]
def _configure_from_settings(sender: Celery, **_: object) -> None:
    from worker.runtime import broker_url_for

    settings = get_settings()
    sender.config_from_object(celery_config(settings, broker_url_for(settings)))


@setup_logging.connect  # type: ignore[untyped-decorator]
def _our_logging(loglevel: object = None, **_: object) -> None:
    """Celery's log setup is replaced by ours (ETIMS_LOG_FORMAT), at the level asked for.

    ``--loglevel`` given on the command line wins; otherwise ``ETIMS_LOG_LEVEL``, else INFO
    (a worker is a long-running service).
    """
    from worker.logs import configure_logging

    settings = get_settings()
    level = _explicit_loglevel() or settings.log_level or "INFO"
    configure_logging(level, settings.log_format)


def _explicit_loglevel() -> str | None:
    """The worker's ``--loglevel`` when it was given on the command line (click knows)."""
    import click
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    if ctx is None or "loglevel" not in ctx.params:
        return None
    if ctx.get_parameter_source("loglevel") != ParameterSource.COMMANDLINE:
        return None
    value = ctx.params["loglevel"]
    return value if isinstance(value, str) else logging.getLevelName(value)


@worker_init.connect  # type: ignore[untyped-decorator]
def _start_services_for_celery_cli(sender: Any = None, **_: object) -> None:
    """Under the celery CLI, do what ``etims-relay worker`` does before consuming."""
    if getattr(sender, "app", None) is not app:
        return  # etims-relay worker (or a test's app) wired itself already
    from worker.worker_services import start_worker_services

    start_worker_services(get_settings())


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _fresh_connections_after_fork(**_: object) -> None:
    """A prefork child must not reuse the parent's DB or HTTP connections."""
    from worker.runtime import reset_runtime

    reset_runtime()
