"""Forward the spool to the intake in order, and bring KRA's results back.

One flush = repeat {take the next batch in spool order, POST it} until the spool is empty
or the intake cannot be reached, then poll the results of forwarded records. What each
answer means for the batch:

- 202: every record is in the outbox (new or already known by its idempotency key, so a
  batch resent after a crash or a lost answer is harmless): mark them forwarded.
- 409 / 422 / 403 naming records: those records are refused (kept with the error); the
  rest of the batch goes again at once, without them.
- 413: the batch was too big; halve it (a single record that is still too big is refused).
- network errors, 401, 429, 5xx: nothing is refused; stop and retry later (Retry-After).

Only one flusher sends from a spool at a time (a lock file beside the spool, taken with
:mod:`filelock`: ``flock`` on POSIX, ``msvcrt.locking`` on Windows, where most tills run), so
the till's background thread and ``etims-relay till flush`` never interleave batches.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from filelock import FileLock

from producers.till.spool import Spool, SpooledRecord

log = logging.getLogger("etims_relay.till")

#: Records per POST (the intake takes at most 100).
DEFAULT_BATCH_SIZE = 50
#: Forwarded records whose result is polled per flush.
RESULTS_PER_FLUSH = 200


@dataclass
class FlushReport:
    forwarded: int = 0
    refused: int = 0
    results: int = 0
    #: Why the flush stopped early (the intake is down, the key is wrong...), if it did.
    error: str | None = None
    retry_after_s: float | None = None
    refused_keys: list[str] = field(default_factory=list)


class _Stop(Exception):
    def __init__(self, error: str, retry_after_s: float | None = None) -> None:
        super().__init__(error)
        self.error, self.retry_after_s = error, retry_after_s


class Forwarder:
    """Talks to the intake for one spool; the API key lives only in the HTTP client."""

    def __init__(
        self,
        spool: Spool,
        url: str,
        api_key: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.spool = spool
        self.batch_size = max(1, min(batch_size, 100))
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            timeout=timeout_s,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"Forwarder({self._http.base_url!s}, key=[secure])"

    def close(self) -> None:
        self._http.close()

    def flush(self) -> FlushReport:
        """Forward everything that may go now, then poll results; never raises on I/O."""
        report = FlushReport()
        with self._exclusive():
            try:
                self._forward(report)
                self._poll(report)
            except _Stop as stop:
                report.error, report.retry_after_s = stop.error, stop.retry_after_s
        return report

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        lock_path = self.spool.path.with_name(self.spool.path.name + ".flush.lock")
        # A new FileLock per flush: its own file handle, so it excludes other threads of this
        # process too (as flock on separate opens does), not only other processes.
        with FileLock(str(lock_path)):
            yield

    # ------------------------------------------------------------------ forwarding

    def _forward(self, report: FlushReport) -> None:
        size = self.batch_size
        while batch := self.spool.next_batch(size):
            response = self._post(batch)
            if response.status_code == 202:
                jobs = response.json()["jobs"]
                self.spool.mark_forwarded(
                    (batch[j["index"]].seq, int(j["id"]), str(j["state"])) for j in jobs
                )
                report.forwarded += len(batch)
                size = self.batch_size
            elif response.status_code == 413:
                if len(batch) == 1:
                    self._refuse(report, batch[0], "too large for the intake (413)")
                size = max(1, len(batch) // 2)
            elif response.status_code in (403, 409, 422):
                self._refuse_named(report, batch, response)
            else:
                raise _Stop(*_transient(response))

    def _post(self, batch: list[SpooledRecord]) -> httpx.Response:
        content = '{"jobs":[' + ",".join(r.envelope for r in batch) + "]}"
        try:
            return self._http.post("/v1/jobs", content=content.encode())
        except httpx.HTTPError as exc:
            raise _Stop(f"intake unreachable: {type(exc).__name__}") from None

    def _refuse_named(
        self, report: FlushReport, batch: list[SpooledRecord], response: httpx.Response
    ) -> None:
        errors = _errors(response)
        named: dict[int, list[str]] = {}
        for error in errors:
            index = error.get("index")
            if isinstance(index, int) and 0 <= index < len(batch):
                where = f"{error.get('path')}: " if error.get("path") else ""
                named.setdefault(index, []).append(f"{where}{error.get('message')}")
        if not named:
            if len(batch) == 1:
                named[0] = [str(e.get("message")) for e in errors] or [response.text[:200]]
            elif response.status_code == 403:
                raise _Stop("the API key may not send for this till's tin or branch (403)")
            else:
                raise _Stop(
                    f"intake refused the batch without naming a record: {response.text[:200]}"
                )
        for index, messages in named.items():
            text = f"{response.status_code}: " + "; ".join(messages)
            self._refuse(report, batch[index], text)

    def _refuse(self, report: FlushReport, record: SpooledRecord, error: str) -> None:
        log.warning("intake refused %s: %s", record.idempotency_key, error)
        self.spool.mark_refused(record.seq, error)
        report.refused += 1
        report.refused_keys.append(record.idempotency_key)

    # ------------------------------------------------------------------ results

    def _poll(self, report: FlushReport) -> None:
        for seq, job_id in self.spool.awaiting_results(RESULTS_PER_FLUSH):
            try:
                response = self._http.get(f"/v1/jobs/{job_id}")
            except httpx.HTTPError as exc:
                raise _Stop(f"intake unreachable: {type(exc).__name__}") from None
            if response.status_code == 200:
                self.spool.record_result(seq, response.json())
                report.results += 1
            elif response.status_code in (401, 429) or response.status_code >= 500:
                raise _Stop(*_transient(response))
            else:
                self.spool.touch(seq)


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        errors = response.json().get("errors")
    except ValueError:
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _transient(response: httpx.Response) -> tuple[str, float | None]:
    retry_after: float | None = None
    try:
        retry_after = float(response.headers.get("Retry-After", ""))
    except ValueError:
        retry_after = None
    if response.status_code == 401:
        return "the intake does not accept this API key (401)", None
    return f"intake answered {response.status_code}; will retry", retry_after
