"""``etims-relay demo``: the whole pipeline on embedded defaults, start to verdict.

The steps are the ones a user would type (and the demo prints them as it runs them): start
the simulator, ``db upgrade``, ``device init`` per branch, ``enqueue jobs.jsonl``, run
workers until every job is settled, play the operator for what KRA refused (fix the cause of
the refused sales, ``replay`` them, and watch their blocked dependents follow), then check
KRA's ledger. The exit code is 0 only when every job is terminal (accepted, superseded, dead
or skipped), the outcome is exactly what the scenario predicts, and the ledger verifies.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine

from etims_relay.demo import report, scenario
from etims_relay.demo.fleet import Fleet, StepFailed
from etims_relay.demo.watch import DemoTimeout, wait_until_settled
from simulator.verify import VerifyReport, verify_ledger
from worker.embedded_broker import EmbeddedBrokerError
from worker.outbox.db import make_engine


@dataclass(frozen=True, slots=True)
class DemoOptions:
    branches: int = 3
    sales: int = 100
    workers: int = 2
    concurrency: int = 4
    timeout_s: float = 300.0
    keep: Path | None = None


def run_demo(options: DemoOptions, console: Console) -> int:
    """Run the demo; always stop every child process. Returns the exit code."""
    try:
        workdir = _workdir(options.keep)
    except StepFailed as exc:
        console.print(f"[red bold]demo failed:[/red bold] {escape(str(exc))}", highlight=False)
        return 2
    fleet = Fleet(workdir)
    ok = False
    try:
        ok = _run(fleet, options, console)
    except (StepFailed, DemoTimeout, EmbeddedBrokerError) as exc:
        console.print(
            f"[red bold]demo failed:[/red bold] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
    finally:
        fleet.close()
        if options.keep is None and ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            console.print(f"working dir (logs, database, ledger): {workdir}", highlight=False)
    return 0 if ok else 1


def _workdir(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="etims-demo-"))
    keep = keep.expanduser().resolve()
    if keep.exists() and any(keep.iterdir()):
        raise StepFailed(f"--keep {keep}: directory is not empty (the demo needs a fresh one)")
    keep.mkdir(parents=True, exist_ok=True)
    return keep


def _run(fleet: Fleet, options: DemoOptions, console: Console) -> bool:
    console.rule("[bold]etims-relay demo")
    console.print(
        f"{options.branches} branch(es) x {options.sales} sales, {options.workers} worker(s) "
        f"x {options.concurrency} threads; SQLite + embedded redis-server + OSCU simulator",
        highlight=False,
        soft_wrap=True,
    )
    url = fleet.start_simulator()
    console.print(
        f"simulator (KRA stand-in) at {url}, ledger {fleet.ledger}", highlight=False, soft_wrap=True
    )
    _step(fleet, console, "db", "upgrade")
    for bhf in scenario.bhf_ids(options.branches):
        device = ("--tin", scenario.TIN, "--bhf-id", bhf, "--serial", f"DEMO-{bhf}")
        _step(fleet, console, "device", "init", *device)
    plan = scenario.build(options.branches, options.sales, datetime.now(UTC))
    _write_jsonl(fleet.workdir / "jobs.jsonl", plan.records)
    _step(fleet, console, "enqueue", "jobs.jsonl")
    engine = make_engine(fleet.database_url)
    try:
        return _drain_and_judge(fleet, options, console, engine, plan)
    finally:
        engine.dispose()


def _step(fleet: Fleet, console: Console, *args: str) -> None:
    started = time.monotonic()
    output = fleet.run(*args)
    first = output.splitlines()[0] if output else ""
    console.print(
        f"[dim]$ etims-relay {escape(shlex.join(args))}[/dim]  {escape(first)}  "
        f"[dim]({time.monotonic() - started:.1f} s)[/dim]",
        highlight=False,
        soft_wrap=True,
    )


def _drain_and_judge(
    fleet: Fleet, options: DemoOptions, console: Console, engine: Engine, plan: scenario.Scenario
) -> bool:
    started = time.monotonic()
    fleet.start_workers(options.workers, options.concurrency)
    console.print(
        f"[dim]$ etims-relay worker -c {options.concurrency} --beat  "
        f"(+{options.workers - 1} without --beat)[/dim]",
        highlight=False,
    )
    wait_until_settled(engine, console, timeout_s=options.timeout_s, check=fleet.check_workers)
    wall = time.monotonic() - started
    first_run = report.collect(engine, [], [])  # the throughput is the workers', not ours
    refused = Refused(report.dead_jobs(engine), report.blocked_jobs(engine))
    _render_refused(console, refused)
    _repair_and_replay(fleet, console, engine, plan, options)
    dead = report.dead_jobs(engine)
    skipped = report.skip_blocked(engine)
    outcome = report.collect(engine, dead, skipped)
    fleet.stop_workers()
    fleet.stop_simulator()
    ledger = verify_ledger(fleet.ledger)
    _render(console, plan, outcome, ledger, wall, first_run)
    problems = _problems(plan, refused, outcome, ledger)
    _verdict(console, problems, fleet, options)
    return not problems


@dataclass(frozen=True, slots=True)
class Refused:
    """What the first run left for the operator: dead jobs, and the jobs blocked behind them."""

    dead: list[report.JobLine]
    blocked: list[report.JobLine]


def _render_refused(console: Console, refused: Refused) -> None:
    console.rule("[bold]what KRA refused")
    report.render_jobs(
        console,
        "dead",
        refused.dead,
        "KRA refused them definitively: code and reason as KRA gave them; not retried",
    )
    report.render_jobs(
        console,
        "blocked",
        refused.blocked,
        "they depend on a dead job, so they wait: they follow once it is accepted",
    )


def _repair_and_replay(
    fleet: Fleet, console: Console, engine: Engine, plan: scenario.Scenario, options: DemoOptions
) -> None:
    """The operator's replay journey: read the dead letters, fix their cause, replay them."""
    code = scenario.UNREGISTERED.item_cd
    console.rule("[bold]the operator's turn: fix the cause, then replay")
    console.print(
        f"The gift-card sales died because item {code} was never registered on their branch "
        "(the stale stock counts stay dead: their data is wrong, a replay would fail again). "
        "An operator would type:",
        highlight=False,
        soft_wrap=True,
    )
    _step(fleet, console, "dead", "list")
    _write_jsonl(fleet.workdir / "register-item.jsonl", plan.repair)
    _step(fleet, console, "enqueue", "register-item.jsonl")
    wait_until_settled(engine, console, timeout_s=options.timeout_s, check=fleet.check_workers)
    for key in plan.replay_keys:
        job = report.job_id(engine, key)
        _step(fleet, console, "replay", str(job), "--reason", f"item {code} registered")
    wait_until_settled(engine, console, timeout_s=options.timeout_s, check=fleet.check_workers)
    _step(fleet, console, "status")


def _render(
    console: Console,
    plan: scenario.Scenario,
    outcome: report.Outcome,
    ledger: VerifyReport,
    wall: float,
    first_run: report.Outcome,
) -> None:
    console.rule("[bold]summary")
    expected = plan.expected_accepted_in_the_end
    report.render_accepted(console, outcome, expected, report.ledger_counts(ledger))
    replayed = plan.expected_after_repair.total()
    console.print(
        f"[bold]replayed:[/bold] {len(plan.replay_keys)} sale(s), accepted after the fix "
        f"with their dependents: {replayed} job(s) including the fix itself",
        highlight=False,
    )
    report.render_jobs(
        console,
        "still dead",
        outcome.dead,
        "left dead on purpose: `etims-relay skip ID --reason` once the count is redone",
    )
    if outcome.skipped:
        report.render_jobs(console, "blocked -> skipped", outcome.skipped, "never sent")
    accepted = outcome.accepted.total()
    superseded = outcome.superseded.total()
    console.print(
        f"[bold]accepted {accepted} of {sum(outcome.states.values())} job(s)[/bold], "
        f"{superseded} stock master(s) superseded by a later one "
        f"(the scenario expects {expected.total()} accepted or superseded)",
        highlight=False,
    )
    first = first_run.accepted.total()
    sending = (
        f", {first / first_run.sending_s:.0f} jobs/s between the first and last acceptance"
        if first_run.sending_s > 0
        else ""
    )
    console.print(
        f"[bold]throughput:[/bold] {first} accepted in {wall:.1f} s = "
        f"{first / wall:.1f} jobs/s (workers started -> all settled, before the replays)"
        f"{sending}",
        highlight=False,
        soft_wrap=True,
    )
    console.print("[bold]ledger (simulator.verify):[/bold]")
    for line in ledger.summary_lines():
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    for violation in ledger.violations:
        console.print(f"  [red]violation:[/red] {violation}", highlight=False, soft_wrap=True)


def _problems(
    plan: scenario.Scenario, refused: Refused, outcome: report.Outcome, ledger: VerifyReport
) -> list[str]:
    problems = [
        f"{n} job(s) still {state}"
        for state, n in outcome.states.items()
        if n and state not in ("accepted", "dead", "skipped", "superseded")
    ]
    if not ledger.ok:
        problems.append(f"the ledger has {len(ledger.violations)} violation(s)")
    expected = plan.expected_accepted_in_the_end
    done = outcome.accepted + outcome.superseded  # a superseded stock master is done
    if done != expected:
        problems.append(f"accepted or superseded {dict(done)}, expected {dict(expected)}")
    if report.ledger_counts(ledger) != outcome.accepted:
        problems.append("KRA's ledger and the outbox disagree on what was accepted")
    first_dead, first_blocked = {d.key for d in refused.dead}, {b.key for b in refused.blocked}
    if first_dead != plan.expected_dead:
        problems.append(f"dead: {sorted(first_dead)}, expected {sorted(plan.expected_dead)}")
    if first_blocked != plan.expected_blocked:
        problems.append(
            f"blocked: {sorted(first_blocked)}, expected {sorted(plan.expected_blocked)}"
        )
    if {d.key for d in outcome.dead} != plan.expected_dead_in_the_end:
        problems.append(
            f"dead after the replays: {sorted(d.key for d in outcome.dead)}, "
            f"expected {sorted(plan.expected_dead_in_the_end)}"
        )
    if outcome.skipped:
        problems.append(f"still blocked after the replays: {[s.key for s in outcome.skipped]}")
    return problems


def _verdict(console: Console, problems: list[str], fleet: Fleet, options: DemoOptions) -> None:
    if problems:
        console.print("[red bold]FAILED:[/red bold]", highlight=False)
        for problem in problems:
            console.print(f"  - {problem}", highlight=False, markup=False, soft_wrap=True)
        return
    console.print(
        "[green bold]OK:[/green bold] every job is terminal (accepted, "
        "superseded, dead or skipped) and KRA's ledger verifies",
        highlight=False,
    )
    if options.keep is not None:
        console.print(
            f"look around: cd {fleet.workdir} && "
            f"ETIMS_DATABASE_URL={fleet.database_url} etims-relay dead list",
            highlight=False,
            soft_wrap=True,
        )


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(_jsonable(record), separators=(",", ":")) + "\n")


def _jsonable(value: Any) -> Any:
    """Decimals as JSON numbers (the CLI reads them back as Decimal), not as strings."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
