"""The ``etims-relay`` command line: one typer app, one module per command group.

Each command module builds its own ``typer.Typer`` or command function; this file only mounts
them, so ``etims-relay --help`` lists everything.
"""

from __future__ import annotations

import typer

from etims_relay.cli import apikey, db, device, jobs, secrets_cmd, worker_cmd
from etims_relay.cli import demo as demo_cli
from etims_relay.cli import intake as intake_cli
from etims_relay.cli import notices as notices_cli
from etims_relay.cli import notifications as notifications_cli
from etims_relay.cli import simulator as simulator_cli
from etims_relay.cli import till as till_cli
from etims_relay.cli import webhook as webhook_cli

app = typer.Typer(
    name="etims-relay",
    help="Get every sale, credit note, item and stock movement signed by KRA's eTIMS OSCU.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(simulator_cli.app, name="simulator")
app.add_typer(db.app, name="db")
app.add_typer(device.app, name="device")
app.add_typer(jobs.dead_app, name="dead")
app.add_typer(jobs.branch_app, name="branch")
app.add_typer(jobs.audit_app, name="audit")
app.add_typer(notices_cli.app, name="notices")
app.add_typer(notifications_cli.app, name="notifications")
app.command("enqueue")(jobs.enqueue_command)
app.command("status")(jobs.status_command)
app.command("replay")(jobs.replay_command)
app.command("skip")(jobs.skip_command)
app.command("worker")(worker_cmd.worker_command)
app.command("intake")(intake_cli.intake_command)
app.add_typer(apikey.app, name="apikey")
app.add_typer(till_cli.app, name="till")
app.add_typer(webhook_cli.app, name="webhook")
app.add_typer(secrets_cmd.app, name="secrets")
app.command("demo")(demo_cli.demo_command)


def main() -> None:
    """Console-script entry point."""
    app()
