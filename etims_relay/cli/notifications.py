"""``etims-relay notifications register | list | ack | revoke``: pushed device events."""

from __future__ import annotations

import time

import typer

from etims_relay.cli.common import (
    actor,
    console,
    database,
    fail,
    opened_runtime,
    print_json,
    safe,
)
from worker.notifications import NotificationEvent, acknowledge, notification_view, register
from worker.outbox import ops_queries as oq

app = typer.Typer(help="Device events pushed by an authority to PUT /v1/notifications.")


@app.command("register")
def register_command(
    name: str = typer.Argument(..., help="Who will push (e.g. kra-prod)."),
) -> None:
    """Create a sender and print its ApiKey once (only its hash is stored)."""
    with opened_runtime(need_broker=False) as rt:
        try:
            key = register(rt.engine, name)
        except ValueError as exc:
            raise fail(str(exc)) from exc
    console.print(f"registered {name}; its ApiKey header value (shown once):", markup=False)
    console.print(key, markup=False, highlight=False, soft_wrap=True)


@app.command("list")
def list_command(
    event: NotificationEvent | None = typer.Option(None, "--event"),
    tin: str | None = typer.Option(None, "--tin"),
    open_only: bool = typer.Option(False, "--open", help="Only unacknowledged events."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(200, "--limit"),
) -> None:
    """Received events, newest first."""
    with database() as conn:
        rows = oq.list_notifications(
            conn,
            event=event.value if event else None,
            tin=tin,
            unacknowledged=open_only,
            limit=limit,
        )
    views = [notification_view(r) for r in rows]
    if as_json:
        print_json(views)
        return
    for v in views:
        state = "ack" if v["acknowledged_at"] else "OPEN"
        console.print(
            f"{v['id']}  {state}  {safe(v['event'])}  {safe(v['tin'])}/{safe(v['bhf_id'])}  "
            f"from {safe(v['sender'])} ({safe(v['delivery_id'])})  {safe(v['message'] or '')}",
            markup=False,
        )
    console.print(f"{len(views)} notification(s)")


@app.command("ack")
def ack_command(
    notification_id: int = typer.Argument(...),
    reason: str = typer.Option("", "--reason", help="What was done (audited)."),
) -> None:
    """Mark an event dealt with: it stops counting in etims_devices_flagged."""
    with opened_runtime(need_broker=False) as rt:
        done = acknowledge(rt.engine, notification_id, actor().name, reason)
    if not done:
        raise fail(f"notification {notification_id} is unknown or already acknowledged")
    console.print(f"notification {notification_id} acknowledged")


@app.command("revoke")
def revoke_command(name: str = typer.Argument(...)) -> None:
    """Stop accepting pushes with this sender's key."""
    with opened_runtime(need_broker=False) as rt:
        with rt.engine.begin() as conn:
            revoked = oq.revoke_registration(conn, name, time.time())
    if not revoked:
        raise fail(f"no live registration named {name!r}")
    console.print(f"{name} revoked")
