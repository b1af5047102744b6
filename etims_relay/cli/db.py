"""``etims-relay db``: schema migrations (run before workers start; workers never migrate)."""

from __future__ import annotations

import typer

from etims_relay.cli.common import console, operator_errors, settings
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
