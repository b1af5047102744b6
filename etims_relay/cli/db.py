"""``etims-relay db``: schema migrations (run before workers start; workers never migrate)."""

from __future__ import annotations

import typer

from etims_relay.cli.common import console, operator_errors, print_json, settings
from worker.outbox import migrate

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the latest); a concurrent run waits."""
    with operator_errors():  # a database that is down: one error line, exit 75
        migrate.upgrade(settings().database_url, revision)
    console.print(f"database at revision {revision}")


@app.command()
def downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. -1.")) -> None:
    """Revert migrations down to REVISION."""
    with operator_errors():
        migrate.downgrade(settings().database_url, revision)
    console.print(f"database at revision {revision}")


@app.command()
def current(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    check: bool = typer.Option(
        False, "--check", help="Exit 1 unless the database is at this code's head revision."
    ),
) -> None:
    """Show the schema revision of the database and the code's head revision."""
    url = settings().database_url
    at, heads = migrate.current_revisions(url), migrate.head_revisions(url)
    up_to_date = at == heads
    if as_json:
        print_json({"current": list(at), "head": list(heads), "up_to_date": up_to_date})
    else:
        shown = ", ".join(at) or "none (never migrated)"
        state = "up to date" if up_to_date else "behind: run `etims-relay db upgrade`"
        console.print(f"database at revision {shown}; head {', '.join(heads)} ({state})")
    if check and not up_to_date:
        raise typer.Exit(1)
