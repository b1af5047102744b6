"""``etims-relay worker``: a Celery worker (threads pool) that drains branches."""

from __future__ import annotations

import socket
import uuid

import typer

from etims_relay.cli.common import configure_logging, settings
from worker import runtime as runtime_module
from worker.celery_app import create_app
from worker.runtime import build_runtime, state_dir_for
from worker.wake import QUEUE


def worker_command(
    concurrency: int = typer.Option(8, "--concurrency", "-c", help="Drains run at once."),
    beat: bool = typer.Option(False, "--beat", help="Also run the sweeper schedule (one per fleet)."),
    loglevel: str = typer.Option("INFO", "--loglevel"),
    hostname: str | None = typer.Option(None, "--hostname", help="Celery node name."),
) -> None:
    """Run a worker: drains branches on wake messages; with --beat also sweeps."""
    cfg = settings()
    configure_logging(loglevel)
    rt = build_runtime(cfg)
    runtime_module.install_runtime(rt)
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
