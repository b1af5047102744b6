"""The offline-tolerant till client: spool locally, forward in order, get signatures back.

Typical use in POS software::

    till = Till("/var/lib/pos/etims-spool.db", "https://relay.example/", api_key,
                tin="P051234567A", bhf_id="00")
    till.enqueue_sale("till-03:000123", [SaleLine("KE2NTNO0000001", "Soap", qty, price)],
                      trd_invc_no="000123")          # returns at once, online or not
    ...
    receipt = till.receipt("till-03:000123")         # None until KRA has signed it
    till.close()

``enqueue_*`` only writes the local SQLite spool (committed to disk before returning), so it
never fails because the network or the intake is down, and a crash loses nothing. A
background thread forwards the spool in order and fetches results; ``flush()`` does the
same on demand.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from producers import builders as b
from producers.builders import SaleLine
from producers.till.flusher import DEFAULT_BATCH_SIZE, FlushReport, Forwarder
from producers.till.spool import Spool, SpoolConflict
from schemas.body_rules import BodyRules
from schemas.jobs import JobEnvelope
from schemas.validation import InvalidRecords, body_rule_errors

log = logging.getLogger("etims_relay.till")

__all__ = ["FlushReport", "Receipt", "SaleLine", "Spool", "SpoolConflict", "Till"]

#: Pause of the background flusher when the spool is empty.
DEFAULT_INTERVAL_S = 1.0
#: Longest pause after repeated failures (full jitter below it).
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a printed receipt needs from KRA."""

    idempotency_key: str
    state: str
    invc_no: int | None
    cur_rcpt_no: int
    tot_rcpt_no: int
    intrl_data: str
    rcpt_sign: str
    sdc_date_time: str
    sdc_id: str | None
    mrc_no: str | None
    qr_url: str | None


class Till:
    def __init__(
        self,
        spool_path: str | Path,
        url: str,
        api_key: str,
        *,
        tin: str,
        bhf_id: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        interval_s: float = DEFAULT_INTERVAL_S,
        start: bool = True,
        transport: httpx.BaseTransport | None = None,
        body_rules: BodyRules | None = None,
    ) -> None:
        self.tin, self.bhf_id = tin, bhf_id
        #: The relay host's body rules (``Settings.body_rules()`` / ``BodyRules.for_flavour``):
        #: a record the relay would refuse is refused here, before it is spooled.
        self.body_rules = body_rules or BodyRules()
        self.spool = Spool(spool_path)
        self._forwarder = Forwarder(
            self.spool, url, api_key, batch_size=batch_size, transport=transport
        )
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_report: FlushReport | None = None
        if start:
            self.start()

    def __repr__(self) -> str:
        return f"Till({self.tin}/{self.bhf_id}, {self.spool!r})"

    # ------------------------------------------------------------------ spooling

    def enqueue(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """Spool envelopes (checked for shape and the host's body rules first) in one
        transaction; return their keys. Raises InvalidRecords naming record and field."""
        envelopes = [JobEnvelope.model_validate(record) for record in records]
        errors = body_rule_errors(envelopes, self.body_rules)
        if errors:
            raise InvalidRecords(errors)
        self.spool.add(records)
        self._wake.set()
        return [str(r["idempotency_key"]) for r in records]

    def enqueue_sale(
        self,
        key: str,
        lines: Sequence[SaleLine],
        *,
        trd_invc_no: str,
        at: datetime | None = None,
        with_stock: bool = True,
        depends_on: Sequence[str] = (),
        cust_tin: str | None = None,
    ) -> str:
        """A sale, and by default its stock-out and stock-master jobs in the right order."""
        at = at or datetime.now(UTC)
        if with_stock:
            records = b.sale_with_stock(
                self.tin,
                self.bhf_id,
                key,
                lines,
                trd_invc_no=trd_invc_no,
                at=at,
                depends_on=depends_on,
                cust_tin=cust_tin,
                pkg_rule=self.body_rules.pkg_rule,
            )
        else:
            records = [
                b.sale(
                    self.tin,
                    self.bhf_id,
                    key,
                    lines,
                    trd_invc_no=trd_invc_no,
                    at=at,
                    depends_on=depends_on,
                    cust_tin=cust_tin,
                    pkg_rule=self.body_rules.pkg_rule,
                )
            ]
        self.enqueue(records)
        return key

    def enqueue_credit_note(
        self,
        key: str,
        original_key: str,
        lines: Sequence[SaleLine],
        *,
        trd_invc_no: str,
        at: datetime | None = None,
        reason: str = "06",
    ) -> str:
        record = b.credit_note(
            self.tin,
            self.bhf_id,
            key,
            original_key,
            lines,
            trd_invc_no=trd_invc_no,
            at=at or datetime.now(UTC),
            reason=reason,
            pkg_rule=self.body_rules.pkg_rule,
        )
        self.enqueue([record])
        return key

    def enqueue_item(
        self, key: str, *, item_cd: str, item_nm: str, price: Decimal, tax_ty_cd: str = "B"
    ) -> str:
        record = b.item(
            self.tin,
            self.bhf_id,
            key,
            item_cd=item_cd,
            item_nm=item_nm,
            price=price,
            tax_ty_cd=tax_ty_cd,
        )
        self.enqueue([record])
        return key

    def enqueue_stock_io(
        self,
        key: str,
        lines: Sequence[SaleLine],
        *,
        sar_ty_cd: str,
        at: datetime | None = None,
        depends_on: Sequence[str] = (),
    ) -> str:
        record = b.stock_io(
            self.tin,
            self.bhf_id,
            key,
            lines,
            sar_ty_cd=sar_ty_cd,
            at=at or datetime.now(UTC),
            depends_on=depends_on,
        )
        self.enqueue([record])
        return key

    # ------------------------------------------------------------------ results

    def receipt(self, key: str) -> Receipt | None:
        """KRA's signature of a sale, once the flusher has fetched it; else None."""
        row = self.spool.get(key, self.tin)
        if row is None or not row["signature"]:
            return None
        signature = json.loads(row["signature"])
        return Receipt(
            idempotency_key=key,
            state=str(row["job_state"]),
            invc_no=row["invc_no"],
            cur_rcpt_no=int(signature["curRcptNo"]),
            tot_rcpt_no=int(signature["totRcptNo"]),
            intrl_data=str(signature["intrlData"]),
            rcpt_sign=str(signature["rcptSign"]),
            sdc_date_time=str(signature["sdcDateTime"]),
            sdc_id=row["sdc_id"],
            mrc_no=row["mrc_no"],
            qr_url=row["qr_url"],
        )

    def status(self) -> dict[str, int]:
        return self.spool.counts()

    # ------------------------------------------------------------------ flushing

    def flush(self) -> FlushReport:
        """Forward what may go now and fetch results, in this thread."""
        self.last_report = self._forwarder.flush()
        return self.last_report

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="till-flusher", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._forwarder.close()
        self.spool.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                report = self.flush()
            except Exception:  # the flusher must outlive any bug in one round
                log.exception("flush failed")
                report = FlushReport(error="flush failed")
            if report.error:
                failures += 1
                ceiling = min(MAX_BACKOFF_S, self._interval_s * 2**failures)
                pause = max(report.retry_after_s or 0.0, random.uniform(0, ceiling))
            else:
                failures = 0
                pause = self._interval_s
            self._wake.wait(pause)
            self._wake.clear()
