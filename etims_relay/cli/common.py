"""Helpers shared by the CLI command modules: settings, runtime, output."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from sqlalchemy import Connection

from etims_relay.settings import Settings, get_settings
from worker.replay import Actor
from worker.runtime import Runtime, build_runtime

console = Console()
err_console = Console(stderr=True)


def settings() -> Settings:
    return get_settings()


def runtime(*, need_broker: bool = True) -> Runtime:
    return build_runtime(settings(), need_broker=need_broker)


def actor() -> Actor:
    """Who runs an operator command, for the audit log."""
    return Actor(os.environ.get("ETIMS_ACTOR") or f"cli:{getpass.getuser()}")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def configure_logging(level: str = "INFO") -> None:
    """Logs as configured (``ETIMS_LOG_FORMAT``: text or json), for every command."""
    from worker.logs import configure_logging as configure

    configure(level, settings().log_format)


@contextmanager
def database() -> Iterator[Connection]:
    """A connection for one read-only command; no broker is started for it."""
    rt = runtime(need_broker=False)
    try:
        with rt.engine.connect() as conn:
            yield conn
    finally:
        rt.close()
