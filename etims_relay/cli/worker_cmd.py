"""``etims-relay worker``: a Celery worker (threads pool) that drains branches.

The same worker as ``celery -A worker.celery_app worker`` (one configuration,
:func:`worker.celery_app.celery_config`), with the options operators need spelled out.
Its Celery node name is ``etims@<host>``, or ``etims-<suffix>@<host>`` with
``--name-suffix``: stable across restarts, so Flower and ``celery inspect`` follow a worker.

With ``--metrics-port P`` the process serves its Prometheus metrics on ``:P/metrics``: the
counters of every drain thread of this process plus the scrape-time database gauges. Run one
port per worker process; Prometheus sums the counters over targets (docs/operations-metrics.md).
"""

from __future__ import annotations

import typer

from etims_relay.cli.common import SERVICE_LOG_LEVEL, configure_logging, settings
from worker.celery_app import create_app, node_name
from worker.runtime import state_dir_for
from worker.wake import QUEUE
from worker.worker_services import start_worker_services


def worker_command(
    concurrency: int = typer.Option(
        8,
        "--concurrency",
        "-c",
        help="Drains run at once = branches in flight; hundreds work "
        "(docs/operations.md, 'Sizing a worker').",
    ),
    beat: bool = typer.Option(
        False, "--beat", help="Also run the sweeper schedule (one per fleet)."
    ),
    loglevel: str | None = typer.Option(
        None, "--loglevel", help="Log level (default: ETIMS_LOG_LEVEL, else INFO)."
    ),
    name_suffix: str | None = typer.Option(
        None,
        "--name-suffix",
        help="Node name etims-SUFFIX@<host> instead of etims@<host> (several workers per host).",
    ),
    hostname: str | None = typer.Option(
        None, "--hostname", help="Full node name part before @<host> (overrides --name-suffix)."
    ),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        help="Serve Prometheus metrics on this port (0: any free port, logged). "
        "Default: ETIMS_METRICS__PORT, else none.",
    ),
) -> None:
    """Run a worker: drains branches on wake messages; with --beat also sweeps."""
    cfg = settings()
    level = configure_logging(loglevel, default=SERVICE_LOG_LEVEL)
    rt = start_worker_services(cfg, metrics_port)
    app = create_app(cfg, rt.broker_url)
    name = f"{hostname}@%h" if hostname else node_name(name_suffix, "%h")
    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--queues={QUEUE}",
        f"--loglevel={level}",
        f"--hostname={name}",
        "--without-gossip",
        "--without-mingle",
    ]
    if cfg.celery.events:
        argv.append("--task-events")
    if beat:
        schedule = state_dir_for(cfg) / "celerybeat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", f"--schedule={schedule}"]
    app.worker_main(argv)
