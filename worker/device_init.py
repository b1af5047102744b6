"""Register a device: call selectInitOsdcInfo once (or import a key obtained elsewhere) and
store its cmcKey encrypted, then fetch the branch's tax rates from KRA's code list.

KRA issues a cmcKey once per device and answers a re-initialisation with 902 *without* the
key, and repeated inits have corrupted device records on the GavaConnect sandbox. So a device
we already hold is never re-initialised unless the operator says ``--force``; a device that
another system initialised is brought in with ``device import``, which proves the key with one
harmless authenticated lookup (selectCodeList, whose class 04 we need anyway) before storing
anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine

from schemas.envelope import InitInfo
from worker import codes
from worker.devices import NO_DEVICE_PREFIX, DeviceDirectory
from worker.oscu.client import OscuClient
from worker.oscu.credentials import DeviceCredentials
from worker.oscu.outcome import CallOutcome, OutcomeKind
from worker.outbox import device_queries as dq
from worker.tax_rates import rates_from_json


class DeviceInitError(Exception):
    """KRA refused the initialisation (or the key), or the answer carried no key."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What we show of a device: everything but the key."""

    tin: str
    bhf_id: str
    serial: str
    sdc_id: str | None
    mrc_no: str | None
    info: dict[str, Any]
    already_registered: bool
    #: KRA's rates for the branch, None if the code list could not be fetched (see ``codes``)
    tax_rates: dict[str, Decimal] | None = None
    #: why there are no rates (empty when there are)
    codes_problem: str = ""


def init_info(outcome: CallOutcome) -> InitInfo:
    """The init answer's info, with the key found where KRA put it: ``data.info.cmcKey``
    (spec), ``data.cmcKey``, or the envelope's root (KRA's sandbox, per the published SDK)."""
    data = dict(outcome.data or {})
    root_key = outcome.extra.get("cmcKey")
    if root_key and "cmcKey" not in data:
        data["cmcKey"] = root_key
    return InitInfo.from_data(data)


def init_device(
    engine: Engine,
    client: OscuClient,
    devices: DeviceDirectory,
    *,
    tin: str,
    bhf_id: str,
    serial: str,
    force: bool = False,
) -> DeviceInfo:
    with engine.connect() as conn:
        existing = dq.get_device(conn, tin, bhf_id)
    if existing is not None and not force:
        return DeviceInfo(
            tin,
            bhf_id,
            existing.serial,
            existing.sdc_id,
            existing.mrc_no,
            json.loads(existing.info),
            True,
            rates_from_json(existing.tax_rates),
        )
    outcome = client.init_device(tin, bhf_id, serial)
    if outcome.kind is not OutcomeKind.ACCEPTED:
        hint = (
            " (KRA keeps the existing key and never returns it again: if another system "
            "initialised this device, bring its key in with etims-relay device import "
            f"--tin {tin} --bhf-id {bhf_id} --serial {serial} --cmc-key-file FILE)"
            if outcome.result_code == "902"
            else ""
        )
        raise DeviceInitError(
            f"KRA refused device {serial!r} for {tin}/{bhf_id}: "
            f"{outcome.result_code or outcome.kind.value} {outcome.message}{hint}"
        )
    try:
        info = init_info(outcome)
    except ValueError as exc:
        raise DeviceInitError(
            f"KRA accepted device {serial!r} for {tin}/{bhf_id} but its answer carries no "
            "cmcKey (neither in data.info nor at the root)"
        ) from exc
    public = info.model_dump(mode="json", exclude={"cmcKey"})
    _store(engine, devices, tin, bhf_id, serial, info.cmcKey, info.sdcId, info.mrcNo, public)
    result = codes.sync_device(engine, client, devices, tin, bhf_id)
    return DeviceInfo(
        tin, bhf_id, serial, info.sdcId, info.mrcNo, public, False, result.rates, result.message
    )


def import_device(
    engine: Engine,
    client: OscuClient,
    devices: DeviceDirectory,
    *,
    tin: str,
    bhf_id: str,
    serial: str,
    cmc_key: SecretStr,
    sdc_id: str | None = None,
    mrc_no: str | None = None,
) -> DeviceInfo:
    """Store a key obtained elsewhere once KRA accepted it on a lookup; nothing otherwise.

    The check is ``selectCodeList`` (a read: harmless to repeat, changes nothing at KRA), and
    its class 04 gives the branch's rates in the same call. ``sdc_id``/``mrc_no`` (printed on
    receipts) are what the other system's init answer said; KRA does not tell them again.
    """
    if not cmc_key.get_secret_value().strip():
        raise DeviceInitError("the cmcKey file is empty")
    credentials = DeviceCredentials(tin, bhf_id, SecretStr(cmc_key.get_secret_value().strip()))
    outcome, rates, why = codes.fetch_rates(client, credentials)
    if outcome.kind is OutcomeKind.AUTH:
        raise DeviceInitError(
            f"KRA refused the key for {tin}/{bhf_id} ({outcome.result_code or 'auth'} "
            f"{outcome.message}): wrong cmcKey, tin or bhfId; nothing stored"
        )
    if not outcome.ok:
        raise DeviceInitError(
            f"could not check the key for {tin}/{bhf_id} with KRA "
            f"({outcome.result_code or outcome.kind.value} {outcome.message}); nothing stored, "
            "try again"
        )
    public = {"tin": tin, "bhfId": bhf_id, "sdcId": sdc_id, "mrcNo": mrc_no, "imported": True}
    _store(engine, devices, tin, bhf_id, serial, credentials.cmc_key, sdc_id, mrc_no, public)
    with engine.begin() as conn:
        dq.set_device_key_ok(conn, tin, bhf_id, time.time())
    if rates is not None:
        codes.store_rates(engine, tin, bhf_id, rates)
        devices.forget(tin, bhf_id)
    return DeviceInfo(tin, bhf_id, serial, sdc_id, mrc_no, public, False, rates, why)


def _store(
    engine: Engine,
    devices: DeviceDirectory,
    tin: str,
    bhf_id: str,
    serial: str,
    cmc_key: SecretStr,
    sdc_id: str | None,
    mrc_no: str | None,
    public: dict[str, Any],
) -> None:
    with engine.begin() as conn:
        dq.upsert_device(
            conn,
            {
                "tin": tin,
                "bhf_id": bhf_id,
                "serial": serial,
                "cmc_key_encrypted": devices.encrypt(cmc_key.get_secret_value()),
                "sdc_id": sdc_id,
                "mrc_no": mrc_no,
                "info": json.dumps(public),
                "created_at": time.time(),
            },
        )
        dq.unpark_if(conn, tin, bhf_id, reason_prefix=NO_DEVICE_PREFIX, now=time.time())
    devices.forget(tin, bhf_id)


def device_views(engine: Engine) -> list[dict[str, Any]]:
    """Every device as ``device list`` shows it: no key, ever."""
    with engine.connect() as conn:
        rows = dq.list_devices(conn)
    return [
        {
            "tin": r.tin,
            "bhf_id": r.bhf_id,
            "serial": r.serial,
            "sdc_id": r.sdc_id,
            "mrc_no": r.mrc_no,
            "registered_at": r.created_at,
            "key_ok_at": r.key_ok_at,
            "codes_synced_at": r.codes_synced_at,
            "tax_rates": {k: str(v) for k, v in (rates_from_json(r.tax_rates) or {}).items()}
            or None,
        }
        for r in rows
    ]
