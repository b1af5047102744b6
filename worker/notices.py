"""KRA notices: ``selectNoticeList`` per device, incremental and idempotent.

Each device keeps the ``lastReqDt`` to send next (table ``notice_syncs``): KRA's ``resultDt``
of the last successful answer, as OSCU clients are meant to do, so each sync asks only for
what is new. A notice is stored once per (tin, bhf_id, noticeNo), so a sync that sees a notice
again (a reset ``lastReqDt``, two beats racing, KRA re-sending) stores nothing twice. A failed
call leaves ``lastReqDt`` where it was: the next sync asks again.

Runs from the beat task ``sync_notices`` (worker/tasks.py) and ``etims-relay notices sync``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from worker import metrics
from worker.devices import DeviceDirectory, DeviceNotInitialised
from worker.oscu.client import OscuClient
from worker.oscu.outcome import OutcomeKind
from worker.outbox import ops_queries as oq

log = logging.getLogger("etims_relay.notices")

#: ``lastReqDt`` of a device never synced: before any notice KRA can hold.
FIRST_LAST_REQ_DT = "20000101000000"


@dataclass(frozen=True, slots=True)
class SyncResult:
    tin: str
    bhf_id: str
    outcome: str
    fetched: int
    stored: int
    last_req_dt: str


def sync_all(engine: Engine, client: OscuClient, devices: DeviceDirectory) -> list[SyncResult]:
    """Sync every initialised device; one device's failure does not stop the others."""
    with engine.connect() as conn:
        targets = oq.initialised_devices(conn)
    return [sync_device(engine, client, devices, tin, bhf_id) for tin, bhf_id in targets]


def sync_device(
    engine: Engine,
    client: OscuClient,
    devices: DeviceDirectory,
    tin: str,
    bhf_id: str,
    *,
    since: str | None = None,
) -> SyncResult:
    """Ask KRA for the device's notices since its stored ``lastReqDt`` (or ``since``, e.g. to
    fetch again from an earlier date); store the new ones."""
    if since is None:
        with engine.connect() as conn:
            since = oq.notice_last_req_dt(conn, tin, bhf_id) or FIRST_LAST_REQ_DT
    try:
        device = devices.get(tin, bhf_id)
    except DeviceNotInitialised as exc:
        log.warning("notices %s/%s: %s", tin, bhf_id, exc)
        return SyncResult(tin, bhf_id, "no_device", 0, 0, since)
    outcome = client.select_notice_list(device.credentials, since)
    metrics.record_call(outcome)
    metrics.NOTICE_SYNCS.labels(outcome.kind.value).inc()
    if outcome.kind not in (OutcomeKind.ACCEPTED, OutcomeKind.EMPTY):
        log.warning(
            "notices %s/%s: %s code=%s; lastReqDt stays %s",
            tin,
            bhf_id,
            outcome.kind.value,
            outcome.result_code,
            since,
            extra={"event": "notice_sync", "branch": f"{tin}/{bhf_id}", "outcome": outcome.kind},
        )
        return SyncResult(tin, bhf_id, outcome.kind.value, 0, 0, since)
    rows = _notice_rows(outcome.data)
    now = time.time()
    next_req_dt = outcome.result_dt or max([since, *(str(r.get("regDt") or "") for r in rows)])
    with engine.begin() as conn:
        stored = sum(oq.insert_notice(conn, _values(tin, bhf_id, row, now)) for row in rows)
        oq.save_notice_sync(conn, tin, bhf_id, next_req_dt, now)
    metrics.NOTICES_STORED.inc(stored)
    log.info(
        "notices %s/%s: %d fetched, %d new; lastReqDt %s -> %s",
        tin,
        bhf_id,
        len(rows),
        stored,
        since,
        next_req_dt,
        extra={"event": "notice_sync", "branch": f"{tin}/{bhf_id}", "stored": stored},
    )
    return SyncResult(tin, bhf_id, outcome.kind.value, len(rows), stored, next_req_dt)


def _notice_rows(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = (data or {}).get("noticeList") or []
    return [r for r in rows if isinstance(r, dict) and r.get("noticeNo") is not None]


def _values(tin: str, bhf_id: str, row: dict[str, Any], now: float) -> dict[str, Any]:
    return {
        "tin": tin,
        "bhf_id": bhf_id,
        "notice_no": str(row["noticeNo"]),
        "title": row.get("title"),
        "cont": row.get("cont"),
        "dtl_url": row.get("dtlUrl"),
        "regr_nm": row.get("regrNm"),
        "reg_dt": None if row.get("regDt") is None else str(row["regDt"])[:14],
        "raw_data": json.dumps(row, sort_keys=True, default=str),
        "fetched_at": now,
    }


def notice_view(row: Any, *, raw: bool = False) -> dict[str, Any]:
    """A stored notice as the API and the CLI show it; ``raw`` adds KRA's row as received."""
    view = {
        "id": row.id,
        "tin": row.tin,
        "bhf_id": row.bhf_id,
        "notice_no": row.notice_no,
        "title": row.title,
        "content": row.cont,
        "detail_url": row.dtl_url,
        "registered_by": row.regr_nm,
        "registered_at": row.reg_dt,
        "fetched_at": row.fetched_at,
        "is_read": row.read_at is not None,
        "read_at": row.read_at,
        "read_by": row.read_by,
    }
    if raw:
        view["raw_data"] = None if row.raw_data is None else json.loads(row.raw_data)
    return view


def mark_read(engine: Engine, notice_id: int, actor: str) -> dict[str, Any] | None:
    """Mark a notice read (idempotent); the notice after it, or None if there is none."""
    with engine.begin() as conn:
        oq.mark_notice_read(conn, notice_id, actor, time.time())
        row = oq.get_notice(conn, notice_id)
    return None if row is None else notice_view(row)
