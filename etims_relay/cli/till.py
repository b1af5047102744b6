"""``etims-relay till status | flush``: look into a till's spool and push it, for support staff.

The API key comes from ``--key`` or ``ETIMS_TILL_KEY`` and is never printed.
"""

from __future__ import annotations

import typer

from etims_relay.cli.common import console, fail, print_json
from producers.till.flusher import Forwarder
from producers.till.spool import Spool, SpoolMissing

app = typer.Typer(help="The till client's local spool.", no_args_is_help=True)

SPOOL = typer.Option(..., "--spool", help="Path of the till's spool file.")
CREATE = typer.Option(False, "--create", help="Start an empty spool if the path has none.")


def _open(path: str, create: bool) -> Spool:
    """The spool at ``path``; a path with no spool is refused unless ``--create`` is given."""
    try:
        return Spool(path, create=create)
    except SpoolMissing as exc:
        raise fail(str(exc), code=2) from None


@app.command("status")
def status(
    spool: str = SPOOL,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    create: bool = CREATE,
) -> None:
    """Records by state; refused and held ones with their error."""
    store = _open(spool, create)
    try:
        counts = store.counts()
        kept_aside = store.rows("refused") + store.rows("held")
    finally:
        store.close()
    aside = [
        {
            "seq": r["seq"],
            "idempotency_key": r["idempotency_key"],
            "status": r["status"],
            "error": r["error"],
        }
        for r in sorted(kept_aside, key=lambda r: int(r["seq"]))
    ]
    if as_json:
        print_json({"counts": counts, "kept_aside": aside})
        return
    console.print("  ".join(f"{k} {v}" for k, v in counts.items()), markup=False)
    for item in aside:
        console.print(
            f"  {item['status']}: {item['idempotency_key']}: {item['error']}", markup=False
        )


@app.command("flush")
def flush(
    spool: str = SPOOL,
    url: str = typer.Option(..., "--url", help="Base URL of the intake."),
    key: str = typer.Option(..., "--key", envvar="ETIMS_TILL_KEY", help="The till's API key."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    create: bool = CREATE,
) -> None:
    """Forward everything that may go now and fetch results; exit 1 if the intake failed."""
    store = _open(spool, create)
    forwarder = Forwarder(store, url, key)
    try:
        report = forwarder.flush()
        counts = store.counts()
    finally:
        forwarder.close()
        store.close()
    result = {
        "forwarded": report.forwarded,
        "refused": report.refused,
        "results": report.results,
        "error": report.error,
        "counts": counts,
    }
    if as_json:
        print_json(result)
    else:
        console.print(
            f"forwarded {report.forwarded}, refused {report.refused}, "
            f"results fetched {report.results}",
            markup=False,
        )
        if report.error:
            console.print(f"stopped: {report.error}", markup=False)
    if report.error:
        raise typer.Exit(1)
