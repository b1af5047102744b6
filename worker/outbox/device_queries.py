"""The statements about devices (the ``devices`` table): registration, keys, KRA's tax rates.

One function per statement, each taking a ``Connection`` inside a transaction the caller
opened. The cmcKey column is encrypted by the caller (:mod:`worker.devices`); nothing here
reads it except :func:`get_device`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Row, insert, select, tuple_, update

from worker.outbox.models import branches, devices

__all__ = [
    "device_tax_rates",
    "get_device",
    "list_devices",
    "set_device_key_ok",
    "set_device_tax_rates",
    "unpark_if",
    "upsert_device",
]


def get_device(conn: Connection, tin: str, bhf_id: str) -> Row[Any] | None:
    return conn.execute(
        select(devices).where(devices.c.tin == tin, devices.c.bhf_id == bhf_id)
    ).first()


def upsert_device(conn: Connection, values: Mapping[str, Any]) -> None:
    updated = conn.execute(
        update(devices)
        .where(devices.c.tin == values["tin"], devices.c.bhf_id == values["bhf_id"])
        .values(**values)
    ).rowcount
    if not updated:
        conn.execute(insert(devices).values(**values))


def set_device_tax_rates(
    conn: Connection, tin: str, bhf_id: str, rates_json: str, now: float
) -> None:
    """Store KRA's tax rates for a device's branch (a code list sync also proves the key)."""
    conn.execute(
        update(devices)
        .where(devices.c.tin == tin, devices.c.bhf_id == bhf_id)
        .values(tax_rates=rates_json, codes_synced_at=now, key_ok_at=now)
    )


def set_device_key_ok(conn: Connection, tin: str, bhf_id: str, now: float) -> None:
    """Remember when the device's key was last accepted by KRA."""
    conn.execute(
        update(devices)
        .where(devices.c.tin == tin, devices.c.bhf_id == bhf_id)
        .values(key_ok_at=now)
    )


def list_devices(conn: Connection) -> list[Row[Any]]:
    """Every device without its key, by branch."""
    return list(
        conn.execute(
            select(
                devices.c.tin,
                devices.c.bhf_id,
                devices.c.serial,
                devices.c.sdc_id,
                devices.c.mrc_no,
                devices.c.created_at,
                devices.c.tax_rates,
                devices.c.codes_synced_at,
                devices.c.key_ok_at,
            ).order_by(devices.c.tin, devices.c.bhf_id)
        )
    )


def device_tax_rates(
    conn: Connection, keys: Iterable[tuple[str, str]] | None = None
) -> dict[tuple[str, str], str]:
    """(tin, bhf_id) -> stored rates JSON, for the devices that have rates (all, or ``keys``)."""
    query = select(devices.c.tin, devices.c.bhf_id, devices.c.tax_rates).where(
        devices.c.tax_rates.is_not(None)
    )
    if keys is not None:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        query = query.where(tuple_(devices.c.tin, devices.c.bhf_id).in_(wanted))
    return {(str(t), str(b)): str(r) for t, b, r in conn.execute(query)}


def unpark_if(conn: Connection, tin: str, bhf_id: str, *, reason_prefix: str, now: float) -> None:
    """Clear a park whose cause is now fixed (e.g. the device was registered)."""
    conn.execute(
        update(branches)
        .where(
            branches.c.tin == tin,
            branches.c.bhf_id == bhf_id,
            branches.c.parked_reason.startswith(reason_prefix, autoescape=True),
        )
        .values(parked_reason=None, parked_at=None, wake_after=now)
    )
