"""``etims-relay codes sync``: fetch KRA's code list per device now (worker/codes.py).

The beat does it daily (``ETIMS_CODES__SYNC_INTERVAL_S``); run it by hand after KRA changes a
rate, or when a branch is parked with "no tax rates from KRA yet".
"""

from __future__ import annotations

import typer

from etims_relay.cli.common import console, fail, opened_runtime, print_json
from worker.codes import sync_all

app = typer.Typer(help="KRA code lists (selectCodeList): the tax rates of each branch.")


@app.command("sync")
def sync_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Fetch every device's code list and store its branch's tax rates; exit 1 if any failed."""
    with opened_runtime(need_broker=False) as rt:
        results = sync_all(rt.engine, rt.client, rt.devices)
    rows = [
        {
            "branch": f"{r.tin}/{r.bhf_id}",
            "outcome": r.outcome,
            "tax_rates": None if r.rates is None else {k: str(v) for k, v in r.rates.items()},
            "changed": r.changed,
            "message": r.message or None,
        }
        for r in results
    ]
    if as_json:
        print_json(rows)
    else:
        for r in results:
            shown = " ".join(f"{k}={v}" for k, v in r.rates.items()) if r.rates else r.message
            changed = " (changed)" if r.changed else ""
            console.print(f"{r.tin}/{r.bhf_id}  {r.outcome}  {shown}{changed}", markup=False)
        console.print(f"{len(rows)} device(s)")
    failed = [r for r in results if r.outcome != "accepted"]
    if failed:
        raise fail(f"{len(failed)} device(s) have no fresh rates; stored rates were kept")
