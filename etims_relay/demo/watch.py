"""Watch the outbox while the workers drain it: a progress bar fed by ``status``-like queries.

The database is the truth, so progress is read from it, never from Celery: a job
counts as settled once it is accepted, dead, skipped or blocked (blocked waits for an
operator, which the demo plays once the workers are done).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from schemas.jobs import ACTIVE_STATES
from worker.outbox import ops_queries as oq

POLL_S = 0.25


class DemoTimeout(RuntimeError):
    """The jobs did not settle in time; the message says what was left and where."""


@dataclass(frozen=True, slots=True)
class Counts:
    by_state: dict[str, int]

    def __getitem__(self, state: str) -> int:
        return self.by_state.get(state, 0)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    @property
    def active(self) -> int:
        return sum(self[s.value] for s in ACTIVE_STATES)

    @property
    def settled(self) -> int:
        return self.total - self.active

    def line(self) -> str:
        return "  ".join(f"{state} {n}" for state, n in self.by_state.items() if n)


def counts(engine: Engine) -> Counts:
    with engine.connect() as conn:
        return Counts(oq.job_counts(conn))


def parked_branches(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = oq.branch_backlogs(conn, time.time())
    return [f"{b['tin']}/{b['bhf_id']}: {b['parked_reason']}" for b in rows if b["parked"]]


def wait_until_settled(
    engine: Engine, console: Console, *, timeout_s: float, check: Callable[[], None]
) -> Counts:
    """Poll until no job is active; ``check`` raises if a worker died. Raise on timeout."""
    deadline = time.monotonic() + timeout_s
    now = counts(engine)
    with Progress(
        TextColumn("[bold]draining"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task(_describe(now), total=now.total)
        while True:
            now = counts(engine)
            progress.update(bar, completed=now.settled, description=_describe(now))
            if now.active == 0:
                return now
            parked = parked_branches(engine)
            if parked:
                raise DemoTimeout(
                    "a branch is parked (it needs an operator):\n  " + "\n  ".join(parked)
                )
            check()
            if time.monotonic() > deadline:
                raise DemoTimeout(_timeout_message(engine, now, timeout_s))
            time.sleep(POLL_S)


def _describe(now: Counts) -> str:
    return (
        f"accepted {now['accepted']}/{now.total}  dead {now['dead']}  "
        f"blocked {now['blocked']}  active {now.active}"
    )


def _timeout_message(engine: Engine, now: Counts, timeout_s: float) -> str:
    with engine.connect() as conn:
        backlog = [b for b in oq.branch_backlogs(conn, time.time()) if b["backlog"]]
    lines = [
        f"timed out after {timeout_s:.0f} s with {now.active} job(s) still active ({now.line()})"
    ]
    for b in backlog:
        age = b["oldest_pending_age_s"]
        lines.append(f"  {b['tin']}/{b['bhf_id']}: backlog {b['backlog']}, oldest {age:.0f} s")
    lines.append("see the worker and simulator logs in the working directory's logs/")
    return "\n".join(lines)
