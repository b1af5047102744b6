"""``etims-relay intake``: serve the HTTP intake API (FastAPI on uvicorn)."""

from __future__ import annotations

import typer

from etims_relay.cli.common import SERVICE_LOG_LEVEL, configure_logging, settings


def intake_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    loglevel: str | None = typer.Option(
        None, "--loglevel", help="Log level (default: ETIMS_LOG_LEVEL, else INFO)."
    ),
    access_log: bool = typer.Option(
        True, "--access-log/--no-access-log", help="One log line per HTTP request."
    ),
) -> None:
    """Serve POST /v1/jobs and the read endpoints; GET /docs for the API."""
    import uvicorn

    from producers.intake import context_from_runtime, create_app
    from worker.logs import route_uvicorn_logs
    from worker.runtime import build_runtime

    cfg = settings()
    level = configure_logging(loglevel, default=SERVICE_LOG_LEVEL).lower()
    route_uvicorn_logs()
    runtime = build_runtime(cfg, pre_ping=True, role="intake")
    app = create_app(context_from_runtime(cfg, runtime), max_body_bytes=cfg.intake.max_body_bytes)
    try:
        # log_config=None: uvicorn keeps its hands off logging; its lines reach our handler.
        uvicorn.run(
            app, host=host, port=port, log_level=level, access_log=access_log, log_config=None
        )
    finally:
        runtime.close()
