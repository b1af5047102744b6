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
from rich.markup import escape
from sqlalchemy import Connection

from schemas.settings import Settings, get_settings
from schemas.text import escape_controls
from worker.outbox.dberrors import DbFailure, classify, describe
from worker.replay import Actor, OperatorError
from worker.runtime import Runtime, build_runtime

console = Console()
err_console = Console(stderr=True)


def settings() -> Settings:
    return get_settings()


def runtime(*, need_broker: bool = True) -> Runtime:
    return build_runtime(settings(), need_broker=need_broker, pre_ping=True, role="cli")


def actor() -> Actor:
    """Who runs an operator command, for the audit log."""
    return Actor(os.environ.get("ETIMS_ACTOR") or f"cli:{getpass.getuser()}")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


#: Exit status of a command that found the database unavailable (sysexits' EX_TEMPFAIL):
#: nothing was written, and running the same command again later is safe.
EXIT_UNAVAILABLE = 75


def safe(value: object) -> str:
    """A stored string (key, reason, KRA message) fit for a terminal: control characters
    shown as escapes, so an ESC sequence in a key cannot clear or recolour the screen.
    Print it with ``markup=False``, or through :func:`fail`, which escapes markup too."""
    return escape_controls(str(value))


def safe_block(value: object) -> str:
    """:func:`safe` for multi-line text (a KRA notice's content): its line breaks kept."""
    return "\n".join(safe(line) for line in str(value).split("\n"))


def fail(message: str, code: int = 1) -> typer.Exit:
    """One ``error:`` line on stderr; ``message`` may quote stored strings (escaped here)."""
    text = escape(safe(message))
    err_console.print(f"[red]error:[/red] {text}", highlight=False, markup=True)
    return typer.Exit(code)


def database_failure(exc: BaseException) -> typer.Exit | None:
    """The one-line answer to a database error a user cannot fix by changing the command
    (down, or a concurrent writer won every retry); ``None`` for any other error."""
    failure = classify(exc)
    if failure is None:
        return None
    what = "busy with concurrent writes" if failure is DbFailure.CONFLICT else "unavailable"
    return fail(
        f"database {what} ({describe(exc)}); nothing was written, run the command again",
        EXIT_UNAVAILABLE,
    )


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
    a bad ``--set``), so it gets a message, never a traceback; so does a database that is
    down (exit status :data:`EXIT_UNAVAILABLE`).
    """
    try:
        yield
    except OperatorError as exc:
        raise fail(str(exc)) from exc
    except Exception as exc:
        exit_ = database_failure(exc)
        if exit_ is None:
            raise
        raise exit_ from None


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
