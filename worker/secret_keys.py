"""The keys that encrypt stored secrets (devices' cmcKeys, webhook signing secrets), and
their rotation.

Why several keys: a key that may have leaked (a departed admin, a copied env file) must be
replaceable without losing what it encrypted. ``ETIMS_SECRET_KEY`` therefore lists Fernet
keys, newest first, comma separated: :class:`cryptography.fernet.MultiFernet` encrypts with
the first and decrypts with any. ``etims-relay secrets rotate`` (:func:`rotate_stored_secrets`)
then re-encrypts every stored secret with the first key, after which the old keys can be
dropped from the list. Runbook: ``docs/operations.md``, "Rotating ETIMS_SECRET_KEY".

Messages name a key by its position in the list, never by its value.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Column, Engine, Table, select, tuple_, update

from worker.outbox.intake_models import webhooks
from worker.outbox.models import devices

__all__ = [
    "RotationReport",
    "SecretKeyInvalid",
    "cipher_from_keys",
    "rotate_stored_secrets",
]

#: Rows re-encrypted per transaction: bounded, so a long rotation holds no long lock.
ROTATE_BATCH = 200


class SecretKeyInvalid(ValueError):
    """ETIMS_SECRET_KEY (or the key file) holds something that is not a list of Fernet keys."""


def cipher_from_keys(value: str, *, source: str = "ETIMS_SECRET_KEY") -> MultiFernet:
    """A MultiFernet from ``"newest,older,..."`` (commas or newlines between keys)."""
    keys = [part.strip() for part in value.replace("\n", ",").split(",")]
    if not keys or any(not key for key in keys):
        raise SecretKeyInvalid(f"{source}: an empty entry in the list of keys")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, binascii.Error):
            raise SecretKeyInvalid(
                f"{source}: key {position} of {len(keys)} is not a Fernet key "
                "(urlsafe base64 of 32 bytes)"
            ) from None
    return MultiFernet(fernets)


@dataclass
class RotationReport:
    """What ``secrets rotate`` did: counts per table, and the rows no key could decrypt."""

    cmc_keys: int = 0
    webhook_secrets: int = 0
    #: "devices P051234567A/00", "webhooks P051234567A": rows left as they were.
    undecryptable: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Store:
    table: Table
    key_columns: tuple[Column[Any], ...]
    secret: Column[Any]
    describe: Callable[[Any], str]


_STORES = {
    "cmc_keys": _Store(
        devices,
        (devices.c.tin, devices.c.bhf_id),
        devices.c.cmc_key_encrypted,
        lambda row: f"devices {row.tin}/{row.bhf_id}",
    ),
    "webhook_secrets": _Store(
        webhooks,
        (webhooks.c.tin,),
        webhooks.c.secret_encrypted,
        lambda row: f"webhooks {row.tin}",
    ),
}


def rotate_stored_secrets(engine: Engine, cipher: MultiFernet) -> RotationReport:
    """Re-encrypt every stored cmcKey and webhook secret with ``cipher``'s first key.

    Each row is updated only if its ciphertext is still the one read (a ``device init`` or
    ``webhook set`` meanwhile wrote a fresh one with the current key: left alone). Rows no key
    decrypts are reported, not touched. Safe to run again: it only re-encrypts.
    """
    report = RotationReport()
    for name, store in _STORES.items():
        done = 0
        for batch in _batches(engine, store):
            with engine.begin() as conn:
                for row in batch:
                    old = str(row.secret)
                    try:
                        new = cipher.rotate(old.encode()).decode()
                    except InvalidToken:
                        report.undecryptable.append(store.describe(row))
                        continue
                    match = [col == row._mapping[col.name] for col in store.key_columns]
                    done += conn.execute(
                        update(store.table)
                        .where(*match, store.secret == old)
                        .values({store.secret.name: new})
                    ).rowcount
        setattr(report, name, done)
    return report


def _batches(engine: Engine, store: _Store) -> Iterator[Sequence[Any]]:
    """Rows in primary-key order, ROTATE_BATCH at a time (keyset pagination)."""
    after: tuple[Any, ...] | None = None
    while True:
        query = select(*store.key_columns, store.secret.label("secret"))
        if after is not None:
            query = query.where(tuple_(*store.key_columns) > tuple_(*after))
        query = query.order_by(*store.key_columns).limit(ROTATE_BATCH)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        yield rows
        after = tuple(rows[-1]._mapping[col.name] for col in store.key_columns)
