"""What the run did, read back from the outbox and the simulator's ledger, and the verdict.

Reading results from the database (not from worker logs) is the point of the demo: it is what
an operator would see with ``etims-relay status`` and ``etims-relay dead list``. The ledger is
KRA's side of the story; :func:`simulator.verify.verify_ledger` checks it independently
and its counts must match what the outbox says was accepted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, func, select

from schemas.jobs import JobState
from simulator.verify import VerifyReport
from worker.outbox import intake_queries as iq
from worker.outbox import ops_queries as oq
from worker.outbox import queries as q
from worker.outbox.models import jobs
from worker.replay import Actor, skip

#: ledger summary key -> job kind
LEDGER_KINDS = {
    "items": "item",
    "sales": "sale",
    "credit_notes": "credit_note",
    "stock_ios": "stock_io",
    "stock_masters": "stock_master",
}
ACTOR = Actor("demo")


@dataclass(frozen=True, slots=True)
class JobLine:
    id: int
    kind: str
    branch: str
    key: str
    detail: str


@dataclass
class Outcome:
    accepted: Counter[str] = field(default_factory=Counter)
    #: stock masters never sent because a later one carried their balance
    superseded: Counter[str] = field(default_factory=Counter)
    dead: list[JobLine] = field(default_factory=list)
    skipped: list[JobLine] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    #: seconds between the first and the last acceptance
    sending_s: float = 0.0


def _line(row: Any, detail: str) -> JobLine:
    return JobLine(int(row.id), row.kind, f"{row.tin}/{row.bhf_id}", row.idempotency_key, detail)


def dead_jobs(engine: Engine) -> list[JobLine]:
    with engine.connect() as conn:
        rows = oq.list_jobs_in_state(conn, JobState.DEAD.value)
    return [_line(r, f"[{r.result_code}] {r.result_message}") for r in rows]


def blocked_jobs(engine: Engine) -> list[JobLine]:
    """Blocked jobs, each with the dead job it waits for (what ``etims-relay status`` shows)."""
    with engine.connect() as conn:
        rows = oq.list_jobs_in_state(conn, JobState.BLOCKED.value)
        return [_line(r, _blocked_reason(conn, int(r.id))) for r in rows]


def job_id(engine: Engine, idempotency_key: str) -> int:
    with engine.connect() as conn:
        found = conn.execute(select(jobs.c.id).where(jobs.c.idempotency_key == idempotency_key))
        return int(found.scalar_one())


def skip_blocked(engine: Engine) -> list[JobLine]:
    """Play the operator: skip every blocked job, naming the dead job it waits for."""
    skipped: list[JobLine] = []
    while True:
        with engine.connect() as conn:
            rows = oq.list_jobs_in_state(conn, JobState.BLOCKED.value)
            reasons = {int(r.id): _blocked_reason(conn, int(r.id)) for r in rows}
        if not rows:
            return skipped
        for row in rows:
            skip(engine, int(row.id), ACTOR, reason=reasons[int(row.id)])
            skipped.append(_line(row, reasons[int(row.id)]))


def _blocked_reason(conn: Connection, job_id: int) -> str:
    """Follow the dependencies down to the dead (or skipped) job that blocks ``job_id``."""
    frontier, seen = [job_id], {job_id}
    while frontier:
        current = frontier.pop()
        for dep in q.dependency_states(conn, current):
            root = iq.get_job(conn, int(dep.id))
            if root is not None and dep.state in (JobState.DEAD.value, JobState.SKIPPED.value):
                code = f" [{root.result_code}]" if root.result_code else ""
                return f"depends on job {root.id} ({root.idempotency_key}), {dep.state}{code}"
            if dep.id not in seen:
                seen.add(int(dep.id))
                frontier.append(int(dep.id))
    return "a job it depends on can never be accepted"


def collect(engine: Engine, dead: list[JobLine], skipped: list[JobLine]) -> Outcome:
    accepted = jobs.c.state == JobState.ACCEPTED.value
    superseded = jobs.c.state == JobState.SUPERSEDED.value
    with engine.connect() as conn:
        by_kind = conn.execute(
            select(jobs.c.kind, func.count()).where(accepted).group_by(jobs.c.kind)
        ).all()
        superseded_by_kind = conn.execute(
            select(jobs.c.kind, func.count()).where(superseded).group_by(jobs.c.kind)
        ).all()
        first, last = conn.execute(
            select(func.min(jobs.c.accepted_at), func.max(jobs.c.accepted_at)).where(accepted)
        ).one()
        states = oq.job_counts(conn)
    return Outcome(
        accepted=Counter({str(kind): int(n) for kind, n in by_kind}),
        superseded=Counter({str(kind): int(n) for kind, n in superseded_by_kind}),
        dead=dead,
        skipped=skipped,
        states=states,
        sending_s=float(last - first) if first is not None and last is not None else 0.0,
    )


def ledger_counts(report: VerifyReport) -> Counter[str]:
    totals: Counter[str] = Counter()
    for counts in report.branches.values():
        for name, kind in LEDGER_KINDS.items():
            totals[kind] += counts.get(name, 0)
    return totals


def render_accepted(
    console: Console, outcome: Outcome, expected: Counter[str], ledger: Counter[str]
) -> None:
    """``expected``: jobs expected to be done (accepted, or superseded by a later send)."""
    table = Table(title="accepted by kind", title_justify="left")
    for column in ("kind", "accepted", "superseded", "expected", "in KRA's ledger"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind in sorted(set(expected) | set(outcome.accepted)):
        table.add_row(
            kind,
            str(outcome.accepted[kind]),
            str(outcome.superseded[kind]),
            str(expected[kind]),
            str(ledger[kind]),
        )
    table.add_row(
        "total",
        str(outcome.accepted.total()),
        str(outcome.superseded.total()),
        str(expected.total()),
        str(ledger.total()),
        style="bold",
    )
    console.print(table)


def render_jobs(console: Console, title: str, lines: list[JobLine], note: str) -> None:
    console.print(f"[bold]{title}: {len(lines)}[/bold]  [dim]{note}[/dim]")
    for line in lines:
        console.print(
            f"  job {line.id}  {line.kind}  {line.branch}  {line.key}\n      {line.detail}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
