"""``etims-relay demo``: the first command on a fresh machine; the whole pipeline, no services.

SQLite, the embedded redis-server, the OSCU simulator and real ``etims-relay worker``
processes, all started and stopped by the command. The work lives in :mod:`etims_relay.demo`;
this module only parses options and turns SIGTERM into the same orderly cleanup as Ctrl-C.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import typer

from etims_relay.cli.common import console
from etims_relay.demo import DemoOptions, run_demo


def demo_command(
    branches: int = typer.Option(3, "--branches", min=1, max=99, help="Branches (bhfIds 00..)."),
    sales: int = typer.Option(100, "--sales", min=1, help="Sales per branch."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, help="Threads per worker."),
    timeout: float = typer.Option(300.0, "--timeout", min=1, help="Seconds to settle every job."),
    keep: Path | None = typer.Option(
        None, "--keep", help="Run in this (new or empty) directory and keep it afterwards."
    ),
) -> None:
    """Run the whole pipeline on embedded defaults: sales, stock, credit notes, bad records."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = run_demo(DemoOptions(branches, sales, workers, concurrency, timeout, keep), console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every demo process was stopped[/yellow]")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so ``finally`` blocks stop the children."""
    raise KeyboardInterrupt
