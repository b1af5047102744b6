"""``etims-relay apikey create | list | revoke``: intake API keys.

``create`` prints the key once, alone on the last line of its output (scripts take
``tail -n 1``); only its sha256 is stored, so a lost key is revoked and replaced.
"""

from __future__ import annotations

import sys
import time

import typer

from etims_relay.cli.common import console, fail, opened_runtime, print_json, safe
from producers.apikeys import create_api_key, list_api_keys, revoke_api_key

app = typer.Typer(help="API keys of the HTTP intake.", no_args_is_help=True)


@app.command("create")
def create(
    tin: str = typer.Option(..., "--tin", help="Taxpayer PIN the key belongs to."),
    branch: list[str] = typer.Option(
        [], "--branch", help="Limit the key to this branch id (repeatable); default every branch."
    ),
    admin: bool = typer.Option(False, "--admin", help="Operator key: every tin."),
    label: str | None = typer.Option(None, "--label", help="A note, e.g. the till's name."),
) -> None:
    """Create a key and print it once (last line)."""
    with opened_runtime(need_broker=False) as rt:
        try:
            info, key = create_api_key(rt.engine, tin, branches=branch, admin=admin, label=label)
        except ValueError as exc:
            raise fail(str(exc)) from exc
    scope = (
        "every tin (admin)"
        if admin
        else f"{tin} "
        + (f"branches {', '.join(info.branches)}" if info.branches else "all branches")
    )
    console.print(f"created API key {info.key_id} for {scope}", markup=False)
    console.print("store it now: it is not shown again", markup=False)
    sys.stdout.flush()
    sys.stdout.write(key + "\n")


@app.command("list")
def list_(
    tin: str | None = typer.Option(None, "--tin"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Keys with their scope and state (never the key)."""
    with opened_runtime(need_broker=False) as rt:
        keys = list_api_keys(rt.engine, tin)
    items = [
        {
            "key_id": k.key_id,
            "tin": k.tin,
            "branches": list(k.branches),
            "admin": k.admin,
            "label": k.label,
            "created_at": k.created_at,
            "revoked": k.revoked_at is not None,
        }
        for k in keys
    ]
    if as_json:
        print_json(items)
        return
    for k in keys:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created_at))
        scope = "admin" if k.admin else ",".join(k.branches) or "all branches"
        state = "revoked" if k.revoked_at is not None else "active"
        console.print(
            f"{k.key_id}  {k.tin}  {scope}  {state}  {created}  {safe(k.label or '')}",
            markup=False,
        )
    console.print(f"{len(items)} key(s)")


@app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key id shown by create/list.")) -> None:
    """Revoke a key at once (the next request with it gets 401)."""
    with opened_runtime(need_broker=False) as rt:
        done = revoke_api_key(rt.engine, key_id)
    if not done:
        raise fail(f"no active key {key_id}")
    console.print(f"key {key_id} revoked")
