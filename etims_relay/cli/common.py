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
from worker.replay import Actor, OperatorError
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


#: Level of a one-shot command when ETIMS_LOG_LEVEL is unset.
ONE_SHOT_LOG_LEVEL = "WARNING"
#: Level of the worker and the intake when neither --loglevel nor ETIMS_LOG_LEVEL is given.
SERVICE_LOG_LEVEL = "INFO"


def configure_logging(level: str | None = None, *, default: str = ONE_SHOT_LOG_LEVEL) -> str:
    """Logs as configured (``ETIMS_LOG_FORMAT``: text or json), for every command.

    The level is ``level`` (a command's ``--loglevel``), else ``ETIMS_LOG_LEVEL``, else
    ``default``; returned so that a command can hand it on (to Celery, to uvicorn).
    """
    from worker.logs import configure_logging as configure

    cfg = settings()
    chosen = (level or cfg.log_level or default).upper()
    configure(chosen, cfg.log_format)
    return chosen


@contextmanager
def operator_errors() -> Iterator[None]:
    """Show an :class:`OperatorError` as one ``error:`` line and exit 1.

    Such an error is the operator's to fix (a wrong job id, a state that forbids the action,
    a bad ``--set``), so it gets a message, never a traceback.
    """
    try:
        yield
    except OperatorError as exc:
        raise fail(str(exc)) from exc


@contextmanager
def opened_runtime(*, need_broker: bool = True) -> Iterator[Runtime]:
    """The runtime for one command, closed however the command ends.

    Closing disposes of the engine's pool and the OSCU client, so a short-lived command
    leaves no connection behind, even when it fails; an :class:`OperatorError` is reported
    as :func:`operator_errors` does, then the runtime is closed.
    """
    rt = runtime(need_broker=need_broker)
    try:
        with operator_errors():
            yield rt
    finally:
        rt.close()


@contextmanager
def database() -> Iterator[Connection]:
    """A connection for one read-only command; no broker is started for it."""
    with opened_runtime(need_broker=False) as rt, rt.engine.connect() as conn:
        yield conn
