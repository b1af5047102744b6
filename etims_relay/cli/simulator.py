"""``etims-relay simulator``: serve the strict OSCU simulator, or ``verify`` its ledger.

Without a subcommand it serves every OSCU endpoint at ``http://HOST:PORT/`` until SIGINT or
SIGTERM, reloading its state from ``--ledger`` first. It prints exactly one line on stdout
(``listening on http://...``), which :class:`simulator.SimulatorProcess` waits for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Run the strict OSCU simulator (KRA stand-in for tests and demos).",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    ledger: Annotated[
        Path | None, typer.Option(help="Append-only JSON-lines ledger (reloaded on start).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one.")] = 8088,
    latency_ms: Annotated[float, typer.Option(help="Delay added to every answer.")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="Up to this much extra random delay.")] = 0.0,
    vat_scheme: Annotated[
        str, typer.Option(help="Amount scheme: inclusive | split | exclusive (reference §7.1).")
    ] = "split",
    approved_serial: Annotated[
        list[str] | None,
        typer.Option(help="Approved device serial (repeatable); default: approve any."),
    ] = None,
    tolerate_gaps: Annotated[
        bool, typer.Option(help="invcNo/sarNo may skip numbers (still increasing).")
    ] = False,
    invoice_details: Annotated[
        bool, typer.Option(help="Serve selectInvoiceDetails (off: HTTP 404).")
    ] = True,
    tax_rate: Annotated[
        list[str] | None, typer.Option(help="Tax rate override like B=16 (repeatable).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the fault/jitter RNG.")] = None,
    trd_invc_no_scope: Annotated[
        str,
        typer.Option(help="994 for a trdInvcNo reused within: branch | tin | off (assumed)."),
    ] = "branch",
    init_key_at_root: Annotated[
        bool,
        typer.Option(help="Answer init with cmcKey at the envelope root (KRA's sandbox)."),
    ] = False,
    flavour: Annotated[
        str,
        typer.Option(
            help="Host to stand in for: etims-api | gavaconnect (paths, OAuth, body rules)."
        ),
    ] = "etims-api",
    item_code_structure: Annotated[
        bool | None,
        typer.Option(
            "--item-code-structure/--no-item-code-structure",
            help="saveItem checks itemCd structure and sequence (default: by flavour).",
        ),
    ] = None,
    pkg_rule: Annotated[
        str | None,
        typer.Option(help="pkg of NT sale lines: qty | one_for_unpackaged (default: by flavour)."),
    ] = None,
    service_stock: Annotated[
        bool | None,
        typer.Option(
            "--service-stock/--no-service-stock",
            help="Accept service items (itemTyCd 3) in stock IO/master (default: refused).",
        ),
    ] = None,
    credit_note_buyer: Annotated[
        bool | None,
        typer.Option(
            "--credit-note-buyer/--no-credit-note-buyer",
            help="Credit notes must carry the original's buyer PIN (default: on).",
        ),
    ] = None,
    stock_before_sale: Annotated[
        bool,
        typer.Option(help="Goods must have accepted stock at the branch before a sale."),
    ] = False,
) -> None:
    """Serve the simulator (when no subcommand is given)."""
    if ctx.invoked_subcommand is not None:
        return
    if ledger is None:
        raise typer.BadParameter("--ledger is required to serve", param_hint="--ledger")
    from simulator.options import SimulatorOptions, parse_tax_rates
    from simulator.runner import serve as run_server

    try:
        options = SimulatorOptions(
            vat_scheme=vat_scheme,
            tax_rates=parse_tax_rates(tax_rate or []),
            tolerate_gaps=tolerate_gaps,
            approved_serials=frozenset(approved_serial) if approved_serial else None,
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            invoice_details=invoice_details,
            seed=seed,
            trd_invc_no_scope=trd_invc_no_scope,
            init_key_at_root=init_key_at_root,
            flavour=flavour,
            item_code_structure=item_code_structure,
            pkg_rule=pkg_rule,
            no_service_stock=None if service_stock is None else not service_stock,
            credit_note_buyer=credit_note_buyer,
            stock_before_sale=stock_before_sale,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def announce(bound: int) -> None:
        typer.echo(f"OSCU simulator listening on http://{host}:{bound} (ledger {ledger})")

    run_server(ledger, options, host=host, port=port, on_ready=announce)


@app.command()
def verify(
    ledger: Annotated[Path, typer.Option(help="Ledger written by the simulator.")],
) -> None:
    """Check the ledger's invariants; exit 1 and list the violations if any fail."""
    from simulator.verify import verify_ledger

    if not ledger.exists():
        typer.echo(f"no ledger at {ledger}", err=True)
        raise typer.Exit(2)
    report = verify_ledger(ledger)
    for line in report.summary_lines():
        typer.echo(line)
    if report.ok:
        typer.echo("ledger OK")
        return
    typer.echo(f"{len(report.violations)} violation(s):")
    for violation in report.violations:
        typer.echo(f"  - {violation}")
    raise typer.Exit(1)
