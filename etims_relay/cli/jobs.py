"""``etims-relay enqueue | status | dead | replay | skip | branch``: jobs and their operators."""

from __future__ import annotations

import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress

from etims_relay.cli.common import actor, console, fail, print_json, runtime, settings
from producers.enqueue import EnqueueOptions, IdempotencyConflict, InvalidRecords, enqueue
from schemas.completion import Registrant
from schemas.vat import VatScheme
from worker.outbox import queries as q
from worker.replay import OperatorError, replay, set_next, skip

#: Records written per transaction by ``enqueue`` is the whole file (all-or-nothing); the
#: progress bar advances per validated chunk of this size.
CHUNK = 500

dead_app = typer.Typer(help="Dead letters: jobs KRA refused or that ran out of attempts.")
branch_app = typer.Typer(help="Branch operations.")


def enqueue_command(
    file: str = typer.Argument(..., help="JSONL file of job envelopes, or - for stdin."),
) -> None:
    """Enqueue job envelopes (all-or-nothing: any invalid record -> exit 1, nothing written)."""
    lines = _read_lines(file)
    records, line_numbers, parse_errors = _parse_jsonl(lines)
    if parse_errors:
        for error in parse_errors:
            console.print(error, highlight=False, markup=False)
        raise typer.Exit(1)
    cfg = settings()
    options = EnqueueOptions(
        vat_scheme=VatScheme(cfg.vat_scheme),
        tax_rates=cfg.tax_rates,
        registrant=Registrant(cfg.registrant_id, cfg.registrant_name),
    )
    rt = runtime()
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("enqueue", total=len(records))
            try:
                results = enqueue(rt.engine, records, options=options, waker=rt.waker)
            except InvalidRecords as exc:
                for error in exc.errors:
                    line = line_numbers[error.index]
                    console.print(f"line {line}: {error.path}: {error.message}", markup=False)
                raise typer.Exit(1) from exc
            except IdempotencyConflict as exc:
                console.print(
                    f"line {line_numbers[exc.index]}: idempotency_key: {exc.key!r} was already "
                    "used with a different payload",
                    markup=False,
                )
                raise typer.Exit(1) from exc
            progress.update(task, completed=len(records))
    finally:
        rt.close()
    created = sum(1 for r in results if r.created)
    console.print(f"enqueued {created} new job(s), {len(results) - created} already known")


def _read_lines(file: str) -> list[str]:
    if file == "-":
        return sys.stdin.read().splitlines()
    path = Path(file)
    if not path.exists():
        raise fail(f"{file}: no such file")
    return path.read_text(encoding="utf-8").splitlines()


def _parse_jsonl(lines: list[str]) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    records, numbers, errors = [], [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: (json): {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(value, dict):
            errors.append(f"line {number}: (record): must be a JSON object")
            continue
        records.append(value)
        numbers.append(number)
    return records, numbers, errors


def status_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Jobs by state and each branch's backlog."""
    rt = runtime(need_broker=False)
    try:
        with rt.engine.connect() as conn:
            report = {"jobs": q.job_counts(conn), "branches": q.branch_backlogs(conn, time.time())}
    finally:
        rt.close()
    if as_json:
        print_json(report)
        return
    console.print("jobs: " + "  ".join(f"{k} {v}" for k, v in report["jobs"].items()))
    for b in report["branches"]:
        parked = f"  PARKED: {b['parked_reason']}" if b["parked"] else ""
        console.print(
            f"  {b['tin']}/{b['bhf_id']}  backlog {b['backlog']}  "
            f"oldest {b['oldest_pending_age_s']:.1f}s{parked}",
            markup=False,
        )


@dead_app.command("list")
def dead_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    branch: str | None = typer.Option(None, "--branch", help="TIN/BHF, e.g. P051234567A/00."),
    kind: str | None = typer.Option(None, "--kind"),
    code: str | None = typer.Option(None, "--code", help="KRA result code, e.g. 910."),
) -> None:
    """List dead jobs with KRA's code and message."""
    tin, bhf = _split_branch(branch) if branch else (None, None)
    rt = runtime(need_broker=False)
    try:
        with rt.engine.connect() as conn:
            rows = q.list_jobs_in_state(conn, "dead", tin=tin, bhf_id=bhf, kind=kind, code=code)
    finally:
        rt.close()
    items = [
        {
            "id": r.id,
            "kind": r.kind,
            "tin": r.tin,
            "bhf_id": r.bhf_id,
            "idempotency_key": r.idempotency_key,
            "result_code": r.result_code,
            "message": r.result_message,
            "attempts": r.attempts,
        }
        for r in rows
    ]
    if as_json:
        print_json(items)
        return
    for item in items:
        console.print(
            f"{item['id']}  {item['kind']}  {item['tin']}/{item['bhf_id']}  "
            f"{item['idempotency_key']}  [{item['result_code']}] {item['message']}",
            markup=False,
        )
    console.print(f"{len(items)} dead job(s)")


def replay_command(
    job_id: int = typer.Argument(..., help="Id of a dead job."),
    reason: str = typer.Option("", "--reason", help="Why (audited)."),
) -> None:
    """Send a dead job again, at its branch's tail (refused for an accepted job)."""
    rt = runtime()
    try:
        replay(rt.engine, job_id, actor(), reason=reason, waker=rt.waker)
    except OperatorError as exc:
        raise fail(str(exc)) from exc
    finally:
        rt.close()
    console.print(f"job {job_id} is pending again")


def skip_command(
    job_id: int = typer.Argument(..., help="Id of a dead or blocked job."),
    reason: str = typer.Option(..., "--reason", help="Why it is given up (audited)."),
) -> None:
    """Give up on a dead or blocked job, with a reason."""
    rt = runtime(need_broker=False)
    try:
        skip(rt.engine, job_id, actor(), reason=reason)
    except OperatorError as exc:
        raise fail(str(exc)) from exc
    finally:
        rt.close()
    console.print(f"job {job_id} skipped")


@branch_app.command("set-next")
def branch_set_next(
    branch: str = typer.Argument(..., help="TIN/BHF, e.g. P051234567A/00."),
    invc: int | None = typer.Option(None, "--invc", help="KRA's next invcNo."),
    sar: int | None = typer.Option(None, "--sar", help="KRA's next sarNo."),
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Set the branch's next invcNo/sarNo (KRA was ahead) and unpark it."""
    tin, bhf = _split_branch(branch)
    rt = runtime()
    try:
        set_next(rt.engine, tin, bhf, actor(), invc_no=invc, sar_no=sar, reason=reason, waker=rt.waker)
    except OperatorError as exc:
        raise fail(str(exc)) from exc
    finally:
        rt.close()
    console.print(f"branch {tin}/{bhf}: next invcNo {invc or '(unchanged)'}, sarNo {sar or '(unchanged)'}")


def _split_branch(value: str) -> tuple[str, str]:
    tin, sep, bhf = value.partition("/")
    if not sep or not tin or not bhf:
        raise fail(f"branch must be TIN/BHF (e.g. P051234567A/00), got {value!r}")
    return tin, bhf
