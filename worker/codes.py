"""KRA's code list per device: the branch's tax rates come from class 04 of ``selectCodeList``.

KRA validates every sale's ``taxRtA..E`` against its own configuration, and the hosts
disagree with the spec's table (a live host expected E = 0 % where the spec says 8 %). So the
relay asks KRA: each device's class 04 (``userDfnCd1`` = rate in percent) is stored on its
``devices`` row and the drain computes bodies with it. A sync asks for the whole list (an old
``lastReqDt``): it is small, and an incremental answer could leave out class 04.

Runs at ``device init``/``device import``, from the daily beat task ``sync_codes`` and from
``etims-relay codes sync``. A failed sync keeps the rates stored before. Storing rates clears
the "no tax rates" park of the branch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Engine

from worker import metrics
from worker.devices import NO_RATES_PREFIX, DeviceDirectory, DeviceNotInitialised
from worker.oscu.client import OscuClient
from worker.oscu.credentials import DeviceCredentials
from worker.oscu.outcome import CallOutcome, OutcomeKind
from worker.outbox import device_queries as dq
from worker.outbox import ops_queries as oq
from worker.tax_rates import rates_from_json, rates_to_json

log = logging.getLogger("etims_relay.codes")

#: ``lastReqDt`` that asks for every code class (the list is small; rates must be complete).
FULL_LIST_SINCE = "20000101000000"
TAX_CLASS = "04"
TAX_TYPES = ("A", "B", "C", "D", "E")


class CodeListError(ValueError):
    """KRA's answer carries no usable class 04 (a type without a rate, a rate not a number)."""


@dataclass(frozen=True, slots=True)
class CodesResult:
    tin: str
    bhf_id: str
    #: accepted, or the failure kind (auth, transient, ...), or no_device / bad_list
    outcome: str
    rates: dict[str, Decimal] | None
    #: whether the stored rates changed (first rates included)
    changed: bool = False
    message: str = ""


def rates_from_code_list(data: Mapping[str, Any] | None) -> dict[str, Decimal]:
    """Class 04's rate per tax type A-E from ``data.clsList``; raise CodeListError if any is
    missing or unreadable (half a table must never replace a whole one)."""
    classes = (data or {}).get("clsList") or []
    rows = next(
        (c.get("dtlList") or [] for c in classes if isinstance(c, dict) and _is_tax(c)), None
    )
    if rows is None:
        raise CodeListError("KRA's code list has no class 04 (tax types)")
    rates: dict[str, Decimal] = {}
    for row in rows:
        if not isinstance(row, dict) or str(row.get("cd") or "").strip() not in TAX_TYPES:
            continue
        code = str(row["cd"]).strip()
        value = row.get("userDfnCd1")
        raw = ("" if value is None else str(value)).strip().rstrip("%").strip()
        try:
            rate = Decimal(raw)
        except InvalidOperation as exc:
            raise CodeListError(f"class 04 rate of {code} is not a number: {raw!r}") from exc
        if not rate.is_finite() or not 0 <= rate <= 100:
            raise CodeListError(f"class 04 rate of {code} is out of range: {raw!r}")
        rates[code] = rate
    missing = [t for t in TAX_TYPES if t not in rates]
    if missing:
        raise CodeListError(f"class 04 lacks a rate for tax type(s) {', '.join(missing)}")
    return rates


def _is_tax(cls: Mapping[str, Any]) -> bool:
    return str(cls.get("cdCls") or "").strip().zfill(2) == TAX_CLASS


def fetch_rates(
    client: OscuClient, credentials: DeviceCredentials
) -> tuple[CallOutcome, dict[str, Decimal] | None, str]:
    """One ``selectCodeList`` call: (outcome, rates or None, why there are none)."""
    outcome = client.select_code_list(credentials, FULL_LIST_SINCE)
    metrics.record_call(outcome)
    if outcome.kind is not OutcomeKind.ACCEPTED:
        return outcome, None, f"{outcome.result_code or outcome.kind.value} {outcome.message}"
    try:
        return outcome, rates_from_code_list(outcome.data), ""
    except CodeListError as exc:
        return outcome, None, str(exc)


def store_rates(engine: Engine, tin: str, bhf_id: str, rates: Mapping[str, Decimal]) -> bool:
    """Save the branch's rates and lift its "no tax rates" park; True if they changed."""
    now = time.time()
    with engine.begin() as conn:
        row = dq.get_device(conn, tin, bhf_id)
        before = rates_from_json(row.tax_rates) if row is not None else None
        dq.set_device_tax_rates(conn, tin, bhf_id, rates_to_json(rates), now)
        dq.unpark_if(conn, tin, bhf_id, reason_prefix=NO_RATES_PREFIX, now=now)
    return before != dict(rates)


def sync_device(
    engine: Engine, client: OscuClient, devices: DeviceDirectory, tin: str, bhf_id: str
) -> CodesResult:
    """Fetch and store one device's rates; a failure keeps what was stored."""
    try:
        device = devices.get(tin, bhf_id)
    except DeviceNotInitialised as exc:
        return CodesResult(tin, bhf_id, "no_device", None, message=str(exc))
    outcome, rates, why = fetch_rates(client, device.credentials)
    if outcome.kind is OutcomeKind.AUTH:
        devices.forget(tin, bhf_id)
    if rates is None:
        kind = outcome.kind.value if outcome.kind is not OutcomeKind.ACCEPTED else "bad_list"
        log.warning(
            "codes %s/%s: %s: %s; stored rates kept",
            tin,
            bhf_id,
            kind,
            why,
            extra={"event": "codes_sync", "branch": f"{tin}/{bhf_id}", "outcome": kind},
        )
        return CodesResult(tin, bhf_id, kind, None, message=why)
    changed = store_rates(engine, tin, bhf_id, rates)
    devices.forget(tin, bhf_id)
    log.info(
        "codes %s/%s: tax rates %s%s",
        tin,
        bhf_id,
        " ".join(f"{k}={v}" for k, v in sorted(rates.items())),
        " (changed)" if changed else "",
        extra={"event": "codes_sync", "branch": f"{tin}/{bhf_id}", "changed": changed},
    )
    return CodesResult(tin, bhf_id, "accepted", rates, changed)


def sync_all(engine: Engine, client: OscuClient, devices: DeviceDirectory) -> list[CodesResult]:
    """Sync every initialised device; one device's failure does not stop the others."""
    with engine.connect() as conn:
        targets = oq.initialised_devices(conn)
    return [sync_device(engine, client, devices, tin, bhf_id) for tin, bhf_id in targets]
