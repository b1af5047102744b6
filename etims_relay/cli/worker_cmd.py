"""``etims-relay worker``: a Celery worker (threads pool) that drains branches.

With ``--metrics-port P`` the process serves its Prometheus metrics on ``:P/metrics``: the
counters of every drain thread of this process plus the scrape-time database gauges. Run one
port per worker process; Prometheus sums the counters over targets (docs/operations-metrics.md).
"""

from __future__ import annotations

import logging
import socket
import uuid

import typer

from etims_relay.cli.common import settings
from worker import metrics
from worker import runtime as runtime_module
from worker.celery_app import create_app
from worker.logs import configure_logging
from worker.runtime import build_runtime, state_dir_for
from worker.wake import QUEUE

log = logging.getLogger("etims_relay.worker")


def worker_command(
    concurrency: int = typer.Option(8, "--concurrency", "-c", help="Drains run at once."),
    beat: bool = typer.Option(
        False, "--beat", help="Also run the sweeper schedule (one per fleet)."
    ),
    loglevel: str = typer.Option("INFO", "--loglevel"),
    hostname: str | None = typer.Option(None, "--hostname", help="Celery node name."),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        help="Serve Prometheus metrics on this port (0: any free port, logged). "
        "Default: ETIMS_METRICS__PORT, else none.",
    ),
) -> None:
    """Run a worker: drains branches on wake messages; with --beat also sweeps."""
    cfg = settings()
    configure_logging(loglevel, cfg.log_format)
    rt = build_runtime(cfg)
    runtime_module.install_runtime(rt)
    port = metrics_port if metrics_port is not None else cfg.metrics.port
    if port is not None:
        metrics.install_for(rt.engine, cfg.metrics, tax_override=cfg.tax_rates)
        bound = metrics.serve(port, cfg.metrics.bind)
        log.info(
            "metrics on http://%s:%s/metrics",
            cfg.metrics.bind,
            bound,
            extra={"event": "metrics_listening", "metrics_port": bound},
        )
    app = create_app(cfg, rt.broker_url)
    name = hostname or f"etims-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--queues={QUEUE}",
        f"--loglevel={loglevel}",
        f"--hostname={name}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    if beat:
        schedule = state_dir_for(cfg) / "celerybeat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", f"--schedule={schedule}"]
    app.worker_main(argv)
