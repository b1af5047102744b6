"""Rotating ETIMS_SECRET_KEY on both stores: ``etims-relay secrets rotate`` re-encrypts every
stored cmcKey and webhook secret with the newest key, so the old key can be dropped."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr
from sqlalchemy import Engine, select

from tests.helpers import ETIMS_RELAY
from worker import secret_keys
from worker.devices import DeviceDirectory, load_fernet
from worker.outbox import device_queries as dq
from worker.outbox.db import make_engine
from worker.outbox.intake_models import webhooks
from worker.outbox.models import devices
from worker.secret_keys import SecretKeyInvalid, cipher_from_keys, rotate_stored_secrets
from worker.webhooks import generate_secret, set_webhook

TIN = "P051234567A"
CMC = {bhf: f"cmc-SECRET-{bhf}-0123456789abcdef" for bhf in ("00", "01", "02")}


def store_secrets(engine: Engine, key: str) -> str:
    """Three devices and a webhook, encrypted with ``key`` (as an older release wrote them)."""
    old = Fernet(key.encode())
    with engine.begin() as conn:
        for bhf, cmc in CMC.items():
            dq.upsert_device(
                conn,
                {
                    "tin": TIN,
                    "bhf_id": bhf,
                    "serial": f"DEV-{bhf}",
                    "cmc_key_encrypted": old.encrypt(cmc.encode()).decode(),
                    "info": "{}",
                    "created_at": time.time(),
                },
            )
    secret = generate_secret()
    set_webhook(engine, old, TIN, "https://erp.example/hooks", secret)
    return secret


def stored(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        cmc = conn.execute(select(devices.c.cmc_key_encrypted).order_by(devices.c.bhf_id))
        hooks = conn.execute(select(webhooks.c.secret_encrypted))
        return [str(v) for v in cmc.scalars()] + [str(v) for v in hooks.scalars()]


def run_cli(db_url: str, tmp_path: Path, secret_key: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETIMS_")}
    env.update(
        ETIMS_DATABASE_URL=db_url,
        ETIMS_SECRET_KEY=secret_key,
        ETIMS_STATE_DIR=str(tmp_path / "state"),
    )
    return subprocess.run(
        [ETIMS_RELAY, "secrets", "rotate", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rotate_re_encrypts_every_cmc_key_and_webhook_secret_with_the_newest_key(
    db_url: str, tmp_path: Path
) -> None:
    # Given secrets stored under the old key, and the operator's new list "NEW,OLD"
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    engine = make_engine(db_url)
    try:
        webhook_secret = store_secrets(engine, old_key)
        before = stored(engine)

        # When the operator runs the rotation
        done = run_cli(db_url, tmp_path, f"{new_key},{old_key}")

        # Then it reports what it re-encrypted, and shows no secret or key
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"cmc_keys": 3, "webhook_secrets": 1, "undecryptable": []}
        for text in (*CMC.values(), webhook_secret, old_key, new_key):
            assert text not in done.stdout + done.stderr
        # And every stored secret now decrypts with the new key alone, and no longer with the old
        after = stored(engine)
        assert len(after) == 4 and not set(before) & set(after)
        new, old = Fernet(new_key.encode()), Fernet(old_key.encode())
        assert [new.decrypt(token.encode()).decode() for token in after] == [
            *CMC.values(),
            webhook_secret,
        ]
        for token in after:
            with pytest.raises(InvalidToken):
                old.decrypt(token.encode())
        # So a worker configured with only the new key signs with the same cmcKeys
        only_new = load_fernet(SecretStr(new_key), tmp_path, embedded=False)
        directory = DeviceDirectory(engine, only_new)
        got = {bhf: directory.get(TIN, bhf).credentials.cmc_key.get_secret_value() for bhf in CMC}
        assert got == CMC
    finally:
        engine.dispose()


def test_rows_no_key_decrypts_are_named_and_left_alone(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given secrets under a key the operator no longer lists, and one device under the listed key
    lost, current = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    engine = make_engine(db_url)
    monkeypatch.setattr(secret_keys, "ROTATE_BATCH", 2)  # pages through the table
    try:
        store_secrets(engine, lost)
        with engine.begin() as conn:
            dq.upsert_device(
                conn,
                {
                    "tin": TIN,
                    "bhf_id": "01",
                    "serial": "DEV-01",
                    "cmc_key_encrypted": Fernet(current.encode()).encrypt(b"cmc-01").decode(),
                    "info": "{}",
                    "created_at": time.time(),
                },
            )
        before = stored(engine)
        report = rotate_stored_secrets(engine, cipher_from_keys(current))
        after = stored(engine)
    finally:
        engine.dispose()
    assert (report.cmc_keys, report.webhook_secrets) == (1, 0)
    assert report.undecryptable == [f"devices {TIN}/00", f"devices {TIN}/02", f"webhooks {TIN}"]
    assert [a == b for a, b in zip(before, after, strict=True)] == [True, False, True, True]


def test_a_bad_key_in_the_list_is_refused_by_position_never_echoed(
    sqlite_url: str, tmp_path: Path
) -> None:
    good = Fernet.generate_key().decode()
    done = run_cli(sqlite_url, tmp_path, f"{good},not-a-fernet-key")
    assert done.returncode == 1
    assert "key 2 of 2 is not a Fernet key" in " ".join(done.stderr.split())
    assert "not-a-fernet-key" not in done.stdout + done.stderr and good not in done.stderr
    with pytest.raises(SecretKeyInvalid, match="empty entry"):
        cipher_from_keys(f"{good},,")
