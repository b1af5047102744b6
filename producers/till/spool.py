"""The till's local spool: a SQLite file that holds every job until the intake has it.

Why a file and not memory: a sale is only "made" for etims-relay once it is on disk, so
:meth:`Spool.add` commits with ``synchronous=FULL`` before it returns, and a crash or power
cut of the till after that loses nothing. The flusher (see :mod:`producers.till.flusher`)
reads it in ``seq`` order (spool order) and writes back what the intake and KRA said.

Record status::

    spooled -> forwarded      the intake holds it (job_id known); job_state follows KRA
    spooled -> refused        the intake answered 4xx for this record (error kept)
    spooled -> held           it depends on a refused or held record (error names which)
    refused | held -> spooled requeue() after an operator fixed the cause
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.completion import dumps_body

#: KRA states after which a forwarded record needs no more polling. A superseded stock master
#: is stored as such only once the send that carries its balance is accepted
#: (:func:`till_state`); until then it follows that send's state.
FINAL_JOB_STATES = ("accepted", "dead", "skipped", "superseded")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tin TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    envelope TEXT NOT NULL,
    deps TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'spooled',
    error TEXT,
    job_id INTEGER,
    job_state TEXT,
    result_code TEXT,
    result_message TEXT,
    signature TEXT,
    qr_url TEXT,
    sdc_id TEXT,
    mrc_no TEXT,
    invc_no INTEGER,
    created_at REAL NOT NULL,
    forwarded_at REAL,
    checked_at REAL,
    UNIQUE (tin, idempotency_key)
);
CREATE INDEX IF NOT EXISTS ix_records_status_seq ON records (status, seq);
"""


class SpoolMissing(FileNotFoundError):
    """The spool file a support tool was pointed at does not exist."""


class SpoolConflict(ValueError):
    """An idempotency key already spooled with different content."""


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    seq: int
    tin: str
    idempotency_key: str
    kind: str
    envelope: str
    deps: tuple[str, ...]
    job_id: int | None


class Spool:
    """Thread-safe access to one spool file (one connection, one lock)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        """``create=False`` is for tools that look into an existing till's spool: a mistyped
        path must be an error, not a new empty spool that reports "nothing waiting"."""
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise SpoolMissing(f"no spool at {self.path} (pass --create to start an empty one)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    # ------------------------------------------------------------------ writing jobs

    def add(self, envelopes: Sequence[Mapping[str, Any]]) -> None:
        """Spool envelopes atomically, in order; a repeat with the same content is a no-op."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for envelope in envelopes:
                    self._add_one(envelope, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _add_one(self, envelope: Mapping[str, Any], now: float) -> None:
        text = dumps_body(envelope)
        tin, key = str(envelope["tin"]), str(envelope["idempotency_key"])
        found = self._db.execute(
            "SELECT envelope FROM records WHERE tin = ? AND idempotency_key = ?", (tin, key)
        ).fetchone()
        if found is not None:
            if found["envelope"] != text:
                raise SpoolConflict(f"idempotency_key {key!r} already spooled with other content")
            return
        deps = list(envelope.get("depends_on") or [])
        if envelope.get("original_key"):
            deps.append(str(envelope["original_key"]))
        self._db.execute(
            "INSERT INTO records (tin, idempotency_key, kind, envelope, deps, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (tin, key, str(envelope["kind"]), text, json.dumps(deps), now),
        )

    # ------------------------------------------------------------------ forwarding

    def next_batch(self, limit: int) -> list[SpooledRecord]:
        """The first ``limit`` spooled records in spool order that may go now.

        A record depending on a refused or held record is marked held instead (and so are
        its own dependents, transitively), so it never blocks unrelated later records.
        """
        with self._lock:
            bad = {
                (r["tin"], r["idempotency_key"])
                for r in self._db.execute(
                    "SELECT tin, idempotency_key FROM records WHERE status IN ('refused', 'held')"
                )
            }
            batch: list[SpooledRecord] = []
            # Stepped through, not fetched whole: after days offline the spool holds
            # thousands of records, and a batch needs only its first ``limit`` (plus any
            # held on the way).
            rows = self._db.execute("SELECT * FROM records WHERE status = 'spooled' ORDER BY seq")
            for row in rows:
                deps = tuple(json.loads(row["deps"]))
                blocker = next((d for d in deps if (row["tin"], d) in bad), None)
                if blocker is not None:
                    self._write(
                        "UPDATE records SET status = 'held', error = ? WHERE seq = ?",
                        (f"waits for {blocker!r}, which the intake refused", row["seq"]),
                    )
                    bad.add((row["tin"], row["idempotency_key"]))
                    continue
                batch.append(
                    SpooledRecord(
                        row["seq"],
                        row["tin"],
                        row["idempotency_key"],
                        row["kind"],
                        row["envelope"],
                        deps,
                        row["job_id"],
                    )
                )
                if len(batch) >= limit:
                    break
            return batch

    def mark_forwarded(self, results: Iterable[tuple[int, int, str]]) -> None:
        """(seq, job id, job state) for each record the intake accepted (202)."""
        now = time.time()
        # Read the whole answer before the transaction: a malformed reply must fail here, not
        # leave a transaction open that every later sale of this till would trip over.
        rows = [(job_id, state, now, seq) for seq, job_id, state in results]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    self._write(
                        "UPDATE records SET status = 'forwarded', job_id = ?, job_state = ?,"
                        " forwarded_at = ?, error = NULL WHERE seq = ? AND status = 'spooled'",
                        row,
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def mark_refused(self, seq: int, error: str) -> None:
        with self._lock:
            self._write(
                "UPDATE records SET status = 'refused', error = ?"
                " WHERE seq = ? AND status = 'spooled'",
                (error[:2000], seq),
            )

    def requeue(self, key: str) -> int:
        """Put a refused or held record back in line (after the cause was fixed)."""
        with self._lock:
            return self._write(
                "UPDATE records SET status = 'spooled', error = NULL"
                " WHERE idempotency_key = ? AND status IN ('refused', 'held')",
                (key,),
            ).rowcount

    # ------------------------------------------------------------------ results

    def awaiting_results(self, limit: int) -> list[tuple[int, int]]:
        """(seq, job id) of forwarded records whose KRA outcome is not final, or was never
        fetched, least recently checked first.

        Never fetched: a record re-forwarded after the till died may come back from the
        intake already ``accepted`` (the intake held it), but its signature comes only
        from a look at the job.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, job_id FROM records WHERE status = 'forwarded' AND (checked_at IS"
                " NULL OR job_state IS NULL OR job_state NOT IN (?, ?, ?, ?))"
                " ORDER BY COALESCE(checked_at, 0), seq LIMIT ?",
                (*FINAL_JOB_STATES, limit),
            ).fetchall()
        return [(int(r["seq"]), int(r["job_id"])) for r in rows]

    def record_result(self, seq: int, view: Mapping[str, Any]) -> None:
        """Store what GET /v1/jobs/{id} said: state, KRA's answer, signature, QR link."""
        kra = view.get("kra") or {}
        signature = view.get("signature")
        with self._lock:
            self._write(
                "UPDATE records SET job_state = ?, result_code = ?, result_message = ?,"
                " signature = ?, qr_url = ?, sdc_id = ?, mrc_no = ?, invc_no = ?, checked_at = ?"
                " WHERE seq = ?",
                (
                    till_state(view),
                    kra.get("code"),
                    kra.get("message"),
                    None if signature is None else json.dumps(signature),
                    view.get("qr_url"),
                    view.get("sdc_id"),
                    view.get("mrc_no"),
                    view.get("invc_no"),
                    time.time(),
                    seq,
                ),
            )

    def touch(self, seq: int) -> None:
        with self._lock:
            self._write("UPDATE records SET checked_at = ? WHERE seq = ?", (time.time(), seq))

    # ------------------------------------------------------------------ reading

    def get(self, key: str, tin: str | None = None) -> dict[str, Any] | None:
        query = "SELECT * FROM records WHERE idempotency_key = ?"
        params: list[Any] = [key]
        if tin:
            query += " AND tin = ?"
            params.append(tin)
        with self._lock:
            row = self._db.execute(query, params).fetchone()
        return None if row is None else dict(row)

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        query, params = "SELECT * FROM records", []
        if status:
            query += " WHERE status = ?"
            params.append(status)
        with self._lock:
            return [dict(r) for r in self._db.execute(query + " ORDER BY seq", params)]

    def counts(self) -> dict[str, int]:
        """Records by spool status, plus forwarded ones by KRA state."""
        with self._lock:
            by_status = self._db.execute(
                "SELECT status, COUNT(*) FROM records GROUP BY status"
            ).fetchall()
            by_state = self._db.execute(
                "SELECT COALESCE(job_state, 'unknown'), COUNT(*) FROM records"
                " WHERE status = 'forwarded' GROUP BY 1"
            ).fetchall()
        counts = {"spooled": 0, "forwarded": 0, "refused": 0, "held": 0}
        counts.update({str(s): int(n) for s, n in by_status})
        counts.update({f"forwarded.{s}": int(n) for s, n in by_state})
        return counts


def till_state(view: Mapping[str, Any]) -> str | None:
    """The state a till keeps for a job view: a superseded stock master is done only once the
    send that carries its balance is accepted; before that it has that send's state."""
    state = view.get("state")
    carrier = view.get("carried_by")
    if state == "superseded" and isinstance(carrier, Mapping):
        return "superseded" if carrier.get("state") == "accepted" else carrier.get("state")
    return None if state is None else str(state)
