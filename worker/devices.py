"""Device credentials: cmcKeys encrypted at rest, decrypted only in the worker's memory.

The key that encrypts them (Fernet) comes from ``ETIMS_SECRET_KEY``. In embedded mode (SQLite)
a key file is created beside the state on first use, readable by its owner only; with
PostgreSQL a key file on one host would strand the other hosts' workers, so the key must be
configured.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr
from sqlalchemy import Connection, Engine

from worker.oscu.client import DeviceCredentials
from worker.outbox import device_queries as dq
from worker.secret_keys import cipher_from_keys
from worker.tax_rates import rates_from_json

log = logging.getLogger("etims_relay.devices")

KEY_FILE_NAME = "etims-relay.key"
#: Start of the park reason for a branch without a device; ``device init`` clears it.
NO_DEVICE_PREFIX = "no device for"
#: Start of the park reason for a branch whose device has no tax rates from KRA yet;
#: ``codes sync`` (and ``device init``/``import``, which sync) clears it.
NO_RATES_PREFIX = "no tax rates from KRA yet"
#: ``key_ok_at`` is written at most this often per device and process (seconds): ``device
#: list`` shows when a key last worked without a write per job on the hot path.
KEY_OK_EVERY_S = 60.0
#: How long a decrypted device stays cached in a worker (seconds); a rotated key is picked
#: up at the latest after this, or at once after an auth failure (``forget``).
DEVICE_CACHE_TTL_S = 60.0


class SecretKeyMissing(RuntimeError):
    """No ETIMS_SECRET_KEY for a shared database."""


def load_fernet(secret_key: SecretStr | None, state_dir: Path, *, embedded: bool) -> MultiFernet:
    """The cipher of stored secrets: ``ETIMS_SECRET_KEY``'s keys, newest first (see
    :mod:`worker.secret_keys`), or in embedded mode the key file's."""
    if secret_key is not None and secret_key.get_secret_value():
        return cipher_from_keys(secret_key.get_secret_value())
    if not embedded:
        raise SecretKeyMissing(
            "ETIMS_SECRET_KEY must be set when the database is shared (PostgreSQL); "
            "generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        )
    path = state_dir / KEY_FILE_NAME
    if not path.exists():
        _create_key_file(path)
    return cipher_from_keys(path.read_text().strip(), source=str(path))


def _create_key_file(path: Path) -> None:
    """Write the key beside ``path`` and hard-link it in: processes starting at once (workers,
    ``device init``) then all read one complete key, never a half-written or second one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process won the race; its key is complete
    finally:
        temporary.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class Device:
    credentials: DeviceCredentials
    sdc_id: str | None
    mrc_no: str | None
    #: KRA's rates for this branch (class 04), None until a code list sync stored them.
    tax_rates: Mapping[str, Decimal] | None = None


class NoTaxRates(LookupError):
    """The branch's device has no rates from KRA yet and no override is configured."""


class DeviceNotInitialised(LookupError):
    """No device row for a branch: ``etims-relay device init`` was not run."""


class DeviceDirectory:
    """Thread-safe cache of decrypted device credentials, keyed by (tin, bhf_id)."""

    def __init__(
        self, engine: Engine, fernet: Fernet | MultiFernet, ttl_s: float = DEVICE_CACHE_TTL_S
    ) -> None:
        self._engine = engine
        self._fernet = fernet
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Device]] = {}
        self._key_ok: dict[tuple[str, str], float] = {}

    def __repr__(self) -> str:
        return f"DeviceDirectory(cached={len(self._cache)})"

    def get(
        self, tin: str, bhf_id: str, *, need_rates: bool = False, conn: Connection | None = None
    ) -> Device:
        """The device, cached; ``need_rates``: a cached copy without rates is read again
        (a ``codes sync`` in another process may have stored them since). ``conn``: read on
        the caller's connection (the drain inside its step: on SQLite a second connection
        would wait for the step's own write lock)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get((tin, bhf_id))
            if hit and now - hit[0] < self._ttl_s:
                if not need_rates or hit[1].tax_rates is not None:
                    return hit[1]
        if conn is not None:
            row = dq.get_device(conn, tin, bhf_id)
        else:
            with self._engine.connect() as own:
                row = dq.get_device(own, tin, bhf_id)
        if row is None:
            raise DeviceNotInitialised(
                f"{NO_DEVICE_PREFIX} {tin}/{bhf_id}: run etims-relay device init --tin {tin} "
                f"--bhf-id {bhf_id} --serial SERIAL"
            )
        try:
            key = self._fernet.decrypt(row.cmc_key_encrypted.encode()).decode()
        except InvalidToken as exc:
            raise DeviceNotInitialised(
                f"the stored cmcKey of {tin}/{bhf_id} does not decrypt with ETIMS_SECRET_KEY"
            ) from exc
        device = Device(
            DeviceCredentials(tin, bhf_id, SecretStr(key)),
            row.sdc_id,
            row.mrc_no,
            rates_from_json(row.tax_rates),
        )
        with self._lock:
            self._cache[(tin, bhf_id)] = (now, device)
        return device

    def tax_rates(
        self,
        tin: str,
        bhf_id: str,
        override: Mapping[str, Decimal] | None,
        conn: Connection | None = None,
    ) -> Mapping[str, Decimal]:
        """The rates a body of this branch is computed with: the configured override if any,
        else KRA's for the branch. Raises DeviceNotInitialised or NoTaxRates (park reasons)."""
        if override is not None:
            return override
        rates = self.get(tin, bhf_id, need_rates=True, conn=conn).tax_rates
        if rates is None:
            raise NoTaxRates(
                f"{NO_RATES_PREFIX} for {tin}/{bhf_id}: run etims-relay codes sync "
                "(or set ETIMS_TAX_RATES to override KRA's rates)"
            )
        return rates

    def key_worked(self, tin: str, bhf_id: str, at: float | None = None) -> None:
        """Record that the key was accepted; written at most every KEY_OK_EVERY_S per device
        in this process, so the drain can call it after every accepted call."""
        now = time.time() if at is None else at
        with self._lock:
            last = self._key_ok.get((tin, bhf_id))
            if last is not None and now - last < KEY_OK_EVERY_S:
                return
            self._key_ok[(tin, bhf_id)] = now
        try:
            with self._engine.begin() as conn:
                dq.set_device_key_ok(conn, tin, bhf_id, now)
        except Exception as exc:  # a display timestamp must never fail a drain
            log.warning("device %s/%s: key_ok_at not written: %s", tin, bhf_id, exc)

    def forget(self, tin: str, bhf_id: str) -> None:
        with self._lock:
            self._cache.pop((tin, bhf_id), None)

    def encrypt(self, cmc_key: str) -> str:
        return self._fernet.encrypt(cmc_key.encode()).decode()
