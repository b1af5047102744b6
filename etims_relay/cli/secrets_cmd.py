"""``etims-relay secrets rotate``: re-encrypt stored secrets with the newest key.

Step 3 of the rotation runbook (docs/operations.md): every process already runs with
``ETIMS_SECRET_KEY=NEW,OLD``; this re-encrypts every stored cmcKey and webhook secret with
NEW, after which OLD can be removed from the list. Prints counts, never a secret or a key.
"""

from __future__ import annotations

import typer

from etims_relay.cli.common import console, fail, print_json, settings
from worker.devices import SecretKeyMissing
from worker.outbox.db import make_engine
from worker.runtime import secrets_fernet
from worker.secret_keys import SecretKeyInvalid, rotate_stored_secrets

app = typer.Typer(
    help="The keys that encrypt stored cmcKeys and webhook secrets (ETIMS_SECRET_KEY).",
    no_args_is_help=True,
)


@app.command("rotate")
def rotate(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Re-encrypt every stored cmcKey and webhook secret with the first key of ETIMS_SECRET_KEY."""
    config = settings()
    try:
        cipher = secrets_fernet(config)
    except (SecretKeyInvalid, SecretKeyMissing) as exc:
        raise fail(str(exc)) from None
    engine = make_engine(config.database_url, pool=config.database, role="cli")
    try:
        report = rotate_stored_secrets(engine, cipher)
    finally:
        engine.dispose()
    if as_json:
        print_json(
            {
                "cmc_keys": report.cmc_keys,
                "webhook_secrets": report.webhook_secrets,
                "undecryptable": report.undecryptable,
            }
        )
    else:
        console.print(
            f"re-encrypted with the first key of ETIMS_SECRET_KEY: {report.cmc_keys} cmcKey(s), "
            f"{report.webhook_secrets} webhook secret(s)",
            markup=False,
        )
    if report.undecryptable:
        raise fail(
            "no key in ETIMS_SECRET_KEY decrypts these rows (left as they were; add the key "
            "they were written with to the list and run again): " + ", ".join(report.undecryptable)
        )
