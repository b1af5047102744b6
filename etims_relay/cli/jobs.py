"""``etims-relay enqueue | status | dead | replay | skip | branch``: jobs and their operators."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress

from etims_relay.cli.common import (
    actor,
    console,
    database,
    fail,
    opened_runtime,
    operator_errors,
    print_json,
    safe,
    settings,
)
from producers.csv_import import parse_csv
from producers.enqueue import (
    EnqueueOptions,
    IdempotencyConflict,
    InvalidRecords,
    RecordError,
    TrdInvcNoConflict,
    enqueue,
    options_from_settings,
)
from schemas.jobs import JobEnvelope
from schemas.validation import validate_records
from worker.devices import DeviceNotInitialised
from worker.next_number import kra_confirms_next_invoice
from worker.outbox import device_queries as dq
from worker.outbox import ops_queries as oq
from worker.replay import (
    OperatorError,
    audit_row,
    branch_counters,
    edit,
    job_details,
    parse_set,
    replay,
    replay_branch,
    set_next,
    skip,
    unpark,
)
from worker.runtime import Runtime
from worker.tax_rates import override_mismatches

#: Records written per transaction by ``enqueue`` is the whole file (all-or-nothing); the
#: progress bar advances per validated chunk of this size.
CHUNK = 500

dead_app = typer.Typer(help="Dead letters: jobs KRA refused or that ran out of attempts.")
branch_app = typer.Typer(help="Branch operations.")
audit_app = typer.Typer(help="The audit log of operator actions.")


def enqueue_command(
    file: str = typer.Argument(..., help="JSONL file of job envelopes, or - for stdin."),
    csv_format: bool = typer.Option(
        False, "--csv", help="Read CSV (items or single-line sales); implied by a .csv name."
    ),
) -> None:
    """Enqueue job envelopes (all-or-nothing: any invalid record -> exit 1, nothing written)."""
    lines = _read_lines(file)
    field: Callable[[str], str] = str
    if csv_format or file.lower().endswith(".csv"):
        batch = parse_csv("\n".join(lines) + "\n", pkg_rule=settings().body_rules().pkg_rule)
        records, line_numbers = batch.records, batch.lines
        parse_errors, field = [str(e) for e in batch.errors], batch.column_for
    else:
        records, line_numbers, parse_errors = _parse_jsonl(lines)
    if parse_errors:
        for error in parse_errors:
            console.print(error, highlight=False, markup=False)
        raise typer.Exit(1)
    options = _enqueue_options()
    # Validate everything first (progress per chunk): bad input is reported without touching
    # the database or starting a broker, and nothing is written.
    envelopes = _validate_with_progress(records, options, line_numbers, field)
    with opened_runtime() as rt:
        try:
            results = enqueue(rt.engine, envelopes, options=options, waker=rt.waker)
        except InvalidRecords as exc:  # dependencies that do not exist: known only at write time
            _print_record_errors(exc.errors, line_numbers, field)
            raise typer.Exit(1) from exc
        except IdempotencyConflict as exc:
            console.print(
                f"line {line_numbers[exc.index]}: idempotency_key: {exc.key!r} was already "
                "used with a different payload",
                markup=False,
            )
            raise typer.Exit(1) from exc
        except TrdInvcNoConflict as exc:
            console.print(
                f"line {line_numbers[exc.index]}: {field('payload.trdInvcNo')}: "
                f"{exc.trd_invc_no!r} is already used by idempotency_key {exc.other_key!r} "
                f"({exc.scope}); nothing was enqueued",
                markup=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from exc
    created = sum(1 for r in results if r.created)
    console.print(f"enqueued {created} new job(s), {len(results) - created} already known")


def _validate_with_progress(
    records: list[dict[str, Any]],
    options: EnqueueOptions,
    line_numbers: list[int],
    field: Callable[[str], str],
) -> list[JobEnvelope]:
    envelopes: list[JobEnvelope] = []
    errors: list[RecordError] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("validating", total=len(records))
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            try:
                envelopes += validate_records(chunk, options)
            except InvalidRecords as exc:
                errors += [RecordError(e.index + start, e.path, e.message) for e in exc.errors]
            progress.update(task, advance=len(chunk))
    if errors:
        _print_record_errors(errors, line_numbers, field)
        raise typer.Exit(1)
    return envelopes


def _print_record_errors(
    errors: list[RecordError], line_numbers: list[int], field: Callable[[str], str]
) -> None:
    for error in errors:
        line = line_numbers[error.index]
        console.print(
            f"line {line}: {safe(field(error.path))}: {safe(error.message)}", markup=False
        )


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
    """Jobs by state, each branch's backlog, and whether ETIMS_TAX_RATES disagrees with KRA."""
    override = settings().tax_rates
    with database() as conn:
        counts, backlogs = oq.job_counts(conn), oq.branch_backlogs(conn, time.time())
        mismatches = override_mismatches(dq.device_tax_rates(conn), override)
    rates = {
        "override": None if override is None else {k: str(v) for k, v in override.items()},
        "mismatches": [
            {
                "branch": f"{m.tin}/{m.bhf_id}",
                "differences": {
                    code: {"kra": str(kra), "override": str(mine)}
                    for code, (kra, mine) in m.differences.items()
                },
            }
            for m in mismatches
        ],
    }
    if as_json:
        print_json({"jobs": counts, "branches": backlogs, "tax_rates": rates})
        return
    console.print("jobs: " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    for m in mismatches:
        console.print(
            f"TAX RATES: ETIMS_TAX_RATES disagrees with KRA's code list for "
            f"{m.tin}/{m.bhf_id} ({m.describe()}); the override is what is sent",
            markup=False,
        )
    for b in backlogs:
        parked = f"  PARKED: {safe(b['parked_reason'])}" if b["parked"] else ""
        expects = "".join(
            f"  KRA expects {name} {b[key]}"
            for name, key in (("invcNo", "kra_expects_invc_no"), ("sarNo", "kra_expects_sar_no"))
            if b.get(key) is not None
        )
        console.print(
            f"  {b['tin']}/{b['bhf_id']}  backlog {b['backlog']}  "
            f"oldest {b['oldest_pending_age_s']:.1f}s{expects}{parked}",
            markup=False,
        )


@dead_app.command("list")
def dead_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    branch: str | None = typer.Option(None, "--branch", help="TIN/BHF, e.g. P051234567A/00."),
    kind: str | None = typer.Option(None, "--kind"),
    code: str | None = typer.Option(None, "--code", help="KRA result code, e.g. 910."),
    since: str | None = typer.Option(
        None, "--since", help="Died since: 30m, 2h, 7d, or an ISO date/time."
    ),
) -> None:
    """List dead jobs with KRA's code and message."""
    tin, bhf = _split_branch(branch) if branch else (None, None)
    after = _since(since) if since else None
    with database() as conn:
        rows = oq.list_jobs_in_state(
            conn, "dead", tin=tin, bhf_id=bhf, kind=kind, code=code, since=after
        )
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
            "died_at": r.updated_at,
        }
        for r in rows
    ]
    if as_json:
        print_json(items)
        return
    for item in items:
        console.print(
            f"{item['id']}  {safe(item['kind'])}  {safe(item['tin'])}/{safe(item['bhf_id'])}  "
            f"{safe(item['idempotency_key'])}  [{safe(item['result_code'])}] "
            f"{safe(item['message'])}",
            markup=False,
            highlight=False,
        )
    console.print(f"{len(items)} dead job(s)")


@dead_app.command("show")
def dead_show(
    job_id: int = typer.Argument(..., help="Job id (from dead list)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A job's payload and every attempt with KRA's answers, its dependencies and audit."""
    with opened_runtime(need_broker=False) as rt:
        details = job_details(rt.engine, job_id)
    if as_json:
        print_json(details)
        return

    def out(text: str) -> None:  # every value below is a stored string: escaped
        console.print(text, markup=False, highlight=False)

    out(
        f"job {details['id']}  {safe(details['kind'])}  {safe(details['branch'])}  "
        f"{safe(details['idempotency_key'])}  state {safe(details['state'])}"
    )
    out(f"last answer: [{safe(details['result_code'])}] {safe(details['result_message'])}")
    for dep in details["depends_on"]:
        out(f"depends on {safe(dep['idempotency_key'])} ({safe(dep['state'])})")
    out("attempts:")
    for a in details["attempts"]:
        out(
            f"  #{a['number']}  {_when(a['at'])}  {safe(a['outcome'])}  "
            f"code {safe(a['result_code'])}  http {a['http_status']}  {a['latency_ms']} ms  "
            f"number {a['kra_number']}  {safe(a['message'] or a['error'] or '')}"
        )
    out("payload:")
    out(json.dumps(details["payload"], indent=2, default=str))  # JSON escapes control chars
    for entry in details["audit"]:
        out(
            f"audit: {_when(entry['at'])} {safe(entry['actor'])} {safe(entry['action'])} "
            f"{safe(entry['reason'] or '')}"
        )


@dead_app.command("edit")
def dead_edit(
    job_id: int = typer.Argument(..., help="Id of a dead (or blocked) job."),
    sets: list[str] | None = typer.Option(
        None, "--set", help="path=value, e.g. itemList.0.itemCd=KE2NTNO0000001 (repeatable)."
    ),
    payload_file: Path | None = typer.Option(
        None, "--payload", help="File holding the job's whole new payload (JSON object)."
    ),
    reason: str = typer.Option("", "--reason", help="Why (audited)."),
) -> None:
    """Correct a dead job's payload, validated like intake; then replay it."""
    with operator_errors():  # bad input is reported before any database is opened
        pairs = [parse_set(item) for item in sets or ()]
        payload = _payload_from(payload_file) if payload_file else None
    with opened_runtime(need_broker=False) as rt:
        edit(
            rt.engine,
            job_id,
            actor(),
            sets=pairs,
            payload=payload,
            reason=reason,
            options=_enqueue_options(),
        )
    console.print(f"job {job_id} edited; run etims-relay replay {job_id} to send it again")


def replay_command(
    job_id: int | None = typer.Argument(None, help="Id of a dead job."),
    branch: str | None = typer.Option(
        None, "--branch", help="Replay every dead job of TIN/BHF instead."
    ),
    code: str | None = typer.Option(None, "--code", help="With --branch: only this KRA code."),
    reason: str = typer.Option("", "--reason", help="Why (audited)."),
) -> None:
    """Send dead jobs again, at their branch's tail (refused for an accepted job)."""
    if (job_id is None) == (branch is None):
        raise fail("give a JOB_ID or --branch TIN/BHF (not both)")
    if code and branch is None:
        raise fail("--code only goes with --branch")
    with opened_runtime() as rt:
        if job_id is not None:
            replay(rt.engine, job_id, actor(), reason=reason, waker=rt.waker)
            console.print(f"job {job_id} is pending again")
            return
        tin, bhf = _split_branch(branch or "")
        ids = replay_branch(rt.engine, tin, bhf, actor(), code=code, reason=reason, waker=rt.waker)
        console.print(f"{len(ids)} dead job(s) of {tin}/{bhf} pending again: {ids}")


def skip_command(
    job_id: int = typer.Argument(
        ..., help="Id of a dead or blocked job, or of a parked branch's pending head."
    ),
    reason: str = typer.Option(..., "--reason", help="Why it is given up (audited)."),
) -> None:
    """Give up on a job, with a reason (a parked branch's head: the branch resumes)."""
    with opened_runtime(need_broker=False) as rt:
        done = skip(rt.engine, job_id, actor(), reason=reason)
    resumed = "; the branch resumes" if done.unparked else ""
    console.print(f"job {job_id} skipped: {done.describe()}{resumed}", markup=False)


@branch_app.command("set-next")
def branch_set_next(
    branch: str = typer.Argument(..., help="TIN/BHF, e.g. P051234567A/00."),
    invc: int | None = typer.Option(None, "--invc", help="KRA's next invcNo."),
    sar: int | None = typer.Option(None, "--sar", help="KRA's next sarNo."),
    reason: str = typer.Option("", "--reason", help="Why (audited; required with --force)."),
    force: bool = typer.Option(
        False, "--force", help="Set a number that goes backwards or leaves a gap."
    ),
) -> None:
    """Set the branch's next invcNo/sarNo (KRA was ahead) and unpark it.

    Shows what the outbox (and KRA, where it can be asked) says first; a number at or below
    one our jobs hold, or past the next free one, is refused unless KRA named it or --force.
    """
    tin, bhf = _split_branch(branch)
    with opened_runtime() as rt:
        kra_expects = _kra_expects(rt, tin, bhf, invc)
        for view in branch_counters(rt.engine, tin, bhf, kra_expects).values():
            console.print(f"branch {tin}/{bhf}: {view.describe()}", markup=False)
        set_next(
            rt.engine,
            tin,
            bhf,
            actor(),
            invc_no=invc,
            sar_no=sar,
            reason=reason,
            waker=rt.waker,
            force=force,
            kra_expects=kra_expects,
        )
    console.print(
        f"branch {tin}/{bhf}: next invcNo {invc or '(unchanged)'}, sarNo {sar or '(unchanged)'}",
        markup=False,
    )


@branch_app.command("unpark")
def branch_unpark(
    branch: str = typer.Argument(..., help="TIN/BHF, e.g. P051234567A/00."),
    reason: str = typer.Option(..., "--reason", help="What was fixed (audited)."),
) -> None:
    """Let a parked branch drain again once the cause of its park is fixed."""
    tin, bhf = _split_branch(branch)
    with opened_runtime() as rt:
        unpark(rt.engine, tin, bhf, actor(), reason=reason, waker=rt.waker)
    console.print(f"branch {tin}/{bhf} unparked")


def _kra_expects(rt: Runtime, tin: str, bhf: str, invc: int | None) -> dict[str, int]:
    """``{"invcNo": invc}`` when KRA's receipt lookup confirms it is KRA's next number."""
    if invc is None or not rt.settings.oscu.invoice_details_supported:
        return {}
    try:
        device = rt.devices.get(tin, bhf)
    except DeviceNotInitialised:
        return {}
    confirmed = kra_confirms_next_invoice(rt.client, device.credentials, invc)
    verdict = {True: "confirms", False: "does not confirm", None: "could not tell"}[confirmed]
    console.print(f"KRA's receipt lookup {verdict} invcNo {invc} as its next", markup=False)
    return {"invcNo": invc} if confirmed else {}


@audit_app.command("list")
def audit_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    job: int | None = typer.Option(None, "--job", help="Only this job."),
    action: str | None = typer.Option(None, "--action", help="replay, edit, skip, set_next..."),
    since: str | None = typer.Option(None, "--since", help="30m, 2h, 7d, or an ISO date/time."),
    limit: int = typer.Option(200, "--limit"),
) -> None:
    """Who did what to which job or branch, when and why (newest first)."""
    after = _since(since) if since else None
    with database() as conn:
        rows = oq.audit_entries(conn, job_id=job, action=action, since=after, limit=limit)
    entries = [audit_row(r) for r in rows]
    if as_json:
        print_json(entries)
        return
    for e in entries:
        target = f"job {e['job_id']}" if e["job_id"] is not None else "branch"
        console.print(
            f"{_when(e['at'])}  {safe(e['actor'])}  {safe(e['action'])}  {target}  "
            f"{safe(e['branch'])}  {safe(e['reason'] or '')}",
            markup=False,
            highlight=False,
        )
    console.print(f"{len(entries)} audit entr{'y' if len(entries) == 1 else 'ies'}")


_DURATION = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<unit>[smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(value: str) -> float:
    """``30m``/``2h``/``7d`` ago, or an ISO date/time (UTC when no zone is given)."""
    match = _DURATION.match(value.strip())
    if match:
        return time.time() - float(match["n"]) * _UNIT_S[match["unit"]]
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise fail(f"--since wants 30m, 2h, 7d or an ISO date/time, got {value!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _payload_from(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise OperatorError(f"{path}: no such file")
    try:
        value = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise OperatorError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(value, dict):
        raise OperatorError(f"{path}: the payload must be a JSON object")
    return value


def _enqueue_options() -> EnqueueOptions:
    """Validation exactly as ``enqueue`` does it with this configuration."""
    return options_from_settings(settings())


def _split_branch(value: str) -> tuple[str, str]:
    tin, sep, bhf = value.partition("/")
    if not sep or not tin or not bhf:
        raise fail(f"branch must be TIN/BHF (e.g. P051234567A/00), got {value!r}")
    return tin, bhf
