"""``etims-relay intake``: serve the HTTP intake API (FastAPI on uvicorn)."""

from __future__ import annotations

import typer

from etims_relay.cli.common import configure_logging, settings


def intake_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    loglevel: str = typer.Option("info", "--loglevel"),
) -> None:
    """Serve POST /v1/jobs and the read endpoints; GET /docs for the API."""
    import uvicorn

    from producers.intake import context_from_runtime, create_app
    from worker.runtime import build_runtime

    cfg = settings()
    configure_logging(loglevel)
    runtime = build_runtime(cfg, pre_ping=True)
    app = create_app(context_from_runtime(cfg, runtime), max_body_bytes=cfg.intake.max_body_bytes)
    try:
        uvicorn.run(app, host=host, port=port, log_level=loglevel.lower(), access_log=False)
    finally:
        runtime.close()
