"""The ``etims-relay`` command line: one typer app, one module per command group.

Each command module builds its own ``typer.Typer`` or command function; this file only mounts
them, so ``etims-relay --help`` lists everything.
"""

from __future__ import annotations

import sys

import typer

from etims_relay.cli import apikey, broker, codes, db, device, jobs, secrets_cmd, worker_cmd
from etims_relay.cli import demo as demo_cli
from etims_relay.cli import intake as intake_cli
from etims_relay.cli import notices as notices_cli
from etims_relay.cli import notifications as notifications_cli
from etims_relay.cli import simulator as simulator_cli
from etims_relay.cli import till as till_cli
from etims_relay.cli import webhook as webhook_cli
from etims_relay.cli.common import database_failure

app = typer.Typer(
    name="etims-relay",
    help="Get every sale, credit note, item and stock movement signed by KRA's eTIMS OSCU.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _every_command() -> None:
    """Logging as configured (ETIMS_LOG_LEVEL, ETIMS_LOG_FORMAT) before any command runs;
    ``worker`` and ``intake`` reconfigure it when given ``--loglevel``."""
    from pydantic import ValidationError

    from etims_relay.cli.common import configure_logging

    try:
        configure_logging()
    except ValidationError:
        pass  # the command reports bad settings itself, as it always did


app.add_typer(simulator_cli.app, name="simulator")
app.add_typer(db.app, name="db")
app.add_typer(broker.app, name="broker")
app.add_typer(device.app, name="device")
app.add_typer(codes.app, name="codes")
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
    """Console-script entry point (and ``python -m etims_relay``).

    A database error no command caught (down, or a race lost on every retry) is one
    ``error:`` line and exit status 75, never a traceback.
    """
    try:
        app(prog_name="etims-relay")
    except Exception as exc:
        exit_ = database_failure(exc)
        if exit_ is None:
            raise
        sys.exit(exit_.exit_code)
