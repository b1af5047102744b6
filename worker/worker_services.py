"""What a worker process sets up before it consumes: its runtime and its metrics endpoint.

Shared by ``etims-relay worker`` and ``celery -A worker.celery_app worker`` so that both run
the same worker.
"""

from __future__ import annotations

import logging
import resource

from schemas.settings import Settings
from worker import metrics
from worker import runtime as runtime_module
from worker.runtime import Runtime, build_runtime

log = logging.getLogger("etims_relay.worker")


def start_worker_services(settings: Settings, metrics_port: int | None = None) -> Runtime:
    """Build and install the process runtime; serve metrics on ``metrics_port`` (else the
    configured ``ETIMS_METRICS__PORT``, else none)."""
    raise_open_files_limit()
    rt = build_runtime(settings, role="worker")
    runtime_module.install_runtime(rt)
    port = metrics_port if metrics_port is not None else settings.metrics.port
    if port is not None:
        metrics.install_for(rt.engine, settings.metrics, tax_override=settings.tax_rates)
        bound = metrics.serve(port, settings.metrics.bind)
        log.info(
            "metrics on http://%s:%s/metrics",
            settings.metrics.bind,
            bound,
            extra={"event": "metrics_listening", "metrics_port": bound},
        )
    return rt


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; return the new soft
    limit.

    Each drain thread keeps a socket to KRA, and the process holds its database pool, broker
    connections and the metrics listener besides: with ``--concurrency`` in the hundreds a
    soft limit of 1024 (a common default) is within reach, and running out makes connects
    fail. The hard limit is the operator's to set (``LimitNOFILE=``, ``ulimit -Hn``).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # a container may forbid it: keep the soft limit
        log.warning("open files limit stays %d (could not raise it to %d: %s)", soft, hard, exc)
        return soft
    log.info(
        "open files limit raised from %d to %d",
        soft,
        hard,
        extra={"event": "open_files_limit", "soft_was": soft, "soft": hard},
    )
    return hard
