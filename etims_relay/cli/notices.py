"""``etims-relay notices list | read | sync``: KRA notices per device (worker/notices.py)."""

from __future__ import annotations

import typer

from etims_relay.cli.common import (
    actor,
    console,
    database,
    fail,
    opened_runtime,
    print_json,
    safe,
    safe_block,
)
from worker.notices import mark_read, notice_view, sync_all
from worker.outbox import ops_queries as oq

app = typer.Typer(help="KRA notices (selectNoticeList), synced per device by the beat.")


@app.command("list")
def list_command(
    tin: str | None = typer.Option(None, "--tin"),
    bhf_id: str | None = typer.Option(None, "--bhf-id"),
    unread: bool = typer.Option(False, "--unread", help="Only notices nobody has read."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(200, "--limit"),
) -> None:
    """Stored notices, newest first."""
    with database() as conn:
        rows = oq.list_notices(
            conn, tin=tin, bhf_id=bhf_id, is_read=False if unread else None, limit=limit
        )
    views = [notice_view(r) for r in rows]
    if as_json:
        print_json(views)
        return
    for v in views:
        mark = " " if v["is_read"] else "*"
        console.print(
            f"{mark} {v['id']}  {v['tin']}/{v['bhf_id']}  #{v['notice_no']}  "
            f"{v['registered_at']}  {safe(v['title'])}",
            markup=False,
        )
    console.print(f"{len(views)} notice(s); * = unread")


@app.command("read")
def read_command(
    notice_id: int = typer.Argument(..., help="Notice id (from notices list)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a notice and mark it read."""
    with opened_runtime(need_broker=False) as rt:
        view = mark_read(rt.engine, notice_id, actor().name)
    if view is None:
        raise fail(f"no notice {notice_id}")
    if as_json:
        print_json(view)
        return
    console.print(f"#{view['notice_no']}  {safe(view['title'])}", markup=False)
    console.print(safe_block(view["content"] or ""), markup=False)
    if view["detail_url"]:
        console.print(safe(view["detail_url"]), markup=False)
    console.print(f"read by {safe(view['read_by'])}", markup=False)


@app.command("sync")
def sync_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Sync every device's notices now (the beat does it every notices.sync_interval_s)."""
    with opened_runtime(need_broker=False) as rt:
        results = sync_all(rt.engine, rt.client, rt.devices)
    rows = [
        {
            "branch": f"{r.tin}/{r.bhf_id}",
            "outcome": r.outcome,
            "fetched": r.fetched,
            "stored": r.stored,
            "last_req_dt": r.last_req_dt,
        }
        for r in results
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        console.print(
            f"{row['branch']}  {row['outcome']}  fetched {row['fetched']}  new {row['stored']}  "
            f"lastReqDt {row['last_req_dt']}",
            markup=False,
        )
