"""``etims-relay webhook set | show | remove``: per-tin result webhooks.

``set`` generates the signing secret (or reads one from stdin with ``--secret-stdin``) and,
when generated, prints it once, alone on the last line; it is stored encrypted.
"""

from __future__ import annotations

import sys

import typer

from etims_relay.cli.common import (
    console,
    database,
    fail,
    opened_runtime,
    print_json,
    safe,
    settings,
)
from worker.outbox import intake_queries as iq
from worker.webhooks import generate_secret, remove_webhook, set_webhook, webhook_fernet

app = typer.Typer(help="Result webhooks (accepted, dead, blocked events).", no_args_is_help=True)


@app.command("set")
def set_(
    tin: str = typer.Option(..., "--tin"),
    url: str = typer.Option(..., "--url", help="Receiver URL (https:// in production)."),
    secret_stdin: bool = typer.Option(
        False,
        "--secret-stdin",
        help="Read a whsec_<base64> secret from stdin instead of generating one.",
    ),
) -> None:
    """Set the tin's receiver; events from now on are POSTed to it, signed."""
    secret = sys.stdin.readline().strip() if secret_stdin else generate_secret()
    if not secret:
        raise fail("empty secret on stdin")
    with opened_runtime(need_broker=False) as rt:
        try:
            set_webhook(rt.engine, webhook_fernet(settings()), tin, url, secret)
        except ValueError as exc:
            raise fail(str(exc)) from exc
    console.print(f"webhook for {tin}: {url}", markup=False)
    if not secret_stdin:
        console.print("signing secret (store it now: it is not shown again):", markup=False)
        sys.stdout.flush()
        sys.stdout.write(secret + "\n")


@app.command("show")
def show(
    tin: str = typer.Option(..., "--tin"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The tin's URL and its deliveries by state (never the secret)."""
    with database() as conn:
        hook = iq.get_webhook(conn, tin)
        counts = iq.delivery_counts(conn, tin)
        failed = iq.list_deliveries(conn, tin, 10, ["failed"])
    report = {
        "tin": tin,
        "url": hook.url if hook else None,
        "deliveries": counts,
        "recent_failures": [
            {"event_id": r.event_id, "attempts": r.attempts, "error": r.last_error} for r in failed
        ],
    }
    if as_json:
        print_json(report)
        return
    console.print(f"{tin}: {safe(hook.url) if hook else '(no webhook)'}", markup=False)
    console.print("  ".join(f"{k} {v}" for k, v in counts.items()), markup=False)
    for r in failed:
        console.print(
            f"  failed: event {r.event_id} after {r.attempts}: {safe(r.last_error)}",
            markup=False,
        )


@app.command("remove")
def remove(tin: str = typer.Option(..., "--tin")) -> None:
    """Stop sending the tin's events (pending deliveries fail)."""
    with opened_runtime(need_broker=False) as rt:
        removed = remove_webhook(rt.engine, tin)
    if not removed:
        raise fail(f"no webhook for {tin}")
    console.print(f"webhook for {tin} removed")
