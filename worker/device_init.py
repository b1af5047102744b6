"""Register a device: call selectInitOsdcInfo once and store its cmcKey encrypted.

KRA issues a cmcKey once per device and answers a re-initialisation with 902 *without* the
key, and repeated inits have corrupted device records on the GavaConnect sandbox. So a device
we already hold is never re-initialised unless the operator says ``--force``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from schemas.envelope import InitInfo
from worker.devices import NO_DEVICE_PREFIX, DeviceDirectory
from worker.oscu.client import OscuClient
from worker.oscu.outcome import OutcomeKind
from worker.outbox import queries as q


class DeviceInitError(Exception):
    """KRA refused the initialisation, or the answer carried no key."""


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
        existing = q.get_device(conn, tin, bhf_id)
    if existing is not None and not force:
        return DeviceInfo(
            tin,
            bhf_id,
            existing.serial,
            existing.sdc_id,
            existing.mrc_no,
            json.loads(existing.info),
            True,
        )
    outcome = client.init_device(tin, bhf_id, serial)
    if outcome.kind is not OutcomeKind.ACCEPTED:
        hint = (
            " (KRA keeps the existing key; it is not returned again)"
            if outcome.result_code == "902"
            else ""
        )
        raise DeviceInitError(
            f"KRA refused device {serial!r} for {tin}/{bhf_id}: "
            f"{outcome.result_code or outcome.kind.value} {outcome.message}{hint}"
        )
    info = InitInfo.from_data(outcome.data)
    public = info.model_dump(mode="json", exclude={"cmcKey"})
    with engine.begin() as conn:
        q.upsert_device(
            conn,
            {
                "tin": tin,
                "bhf_id": bhf_id,
                "serial": serial,
                "cmc_key_encrypted": devices.encrypt(info.cmcKey.get_secret_value()),
                "sdc_id": info.sdcId,
                "mrc_no": info.mrcNo,
                "info": json.dumps(public),
                "created_at": time.time(),
            },
        )
        q.unpark_if(conn, tin, bhf_id, reason_prefix=NO_DEVICE_PREFIX, now=time.time())
    devices.forget(tin, bhf_id)
    return DeviceInfo(tin, bhf_id, serial, info.sdcId, info.mrcNo, public, False)
