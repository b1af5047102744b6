"""What a worker process sets up before it consumes: its runtime and its metrics endpoint.

Shared by ``etims-relay worker`` and ``celery -A worker.celery_app worker`` so that both run
the same worker.
"""

from __future__ import annotations

import logging

from schemas.settings import Settings
from worker import metrics
from worker import runtime as runtime_module
from worker.runtime import Runtime, build_runtime

log = logging.getLogger("etims_relay.worker")


def start_worker_services(settings: Settings, metrics_port: int | None = None) -> Runtime:
    """Build and install the process runtime; serve metrics on ``metrics_port`` (else the
    configured ``ETIMS_METRICS__PORT``, else none)."""
    rt = build_runtime(settings)
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
