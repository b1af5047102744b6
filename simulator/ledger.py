"""The simulator's append-only ledger: one JSON line per accepted write, in arrival order.

Layout of a line (``orjson`` encoded, ``\\n`` terminated)::

    {"seq": 7, "at": "2024-05-01T12:00:00.123456+03:00", "kind": "write",
     "endpoint": "saveTrnsSalesOsdc", "tin": "P051234567A", "bhfId": "00",
     "body": {...request as received...}, "data": {...answer data or null...}}

    {"seq": 1, "at": "...", "kind": "start", "options": {...SimulatorOptions.to_json()...}}

``start`` lines are written every time a simulator opens the ledger, so ``verify`` knows the
rules in force for the records that follow (``tolerate_gaps``). Device initialisations are
``write`` lines for ``selectInitOsdcInfo`` whose ``data.info`` carries the issued ``cmcKey``:
the ledger is KRA's own memory, and a restart must keep keys valid.

Each record is a single ``os.write`` on an ``O_APPEND`` descriptor, so a SIGKILLed simulator
leaves every answered record on disk (the page cache survives the process); there is no
fsync because the ledger guards against process death, not power loss. A torn last line is
cut off when the ledger is reopened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from simulator.clock import now


class LedgerError(Exception):
    """The ledger file cannot be read as JSON lines (other than a torn last line)."""


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield every complete record; a final line without ``\\n`` (torn by a kill) is skipped."""
    file = Path(path)
    if not file.exists():
        return
    with file.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise LedgerError(f"{file}:{number}: not JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise LedgerError(f"{file}:{number}: a record must be a JSON object")
            yield record


def _cut_torn_tail(path: Path) -> None:
    """Drop a trailing partial line so new records start on a line of their own."""
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        # Walk back to the last newline (records are small; read the tail in blocks).
        position = size
        while position > 0:
            start = max(0, position - 65536)
            handle.seek(start)
            block = handle.read(position - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                return
            position = start
        handle.truncate(0)


class Ledger:
    """Appends records to one JSON-lines file; owns the ``seq`` counter."""

    def __init__(self, path: str | os.PathLike[str], *, next_seq: int = 1) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            _cut_torn_tail(self.path)
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600
        )
        self.next_seq = next_seq

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Stamp ``seq`` and ``at`` onto ``record`` and write it as one line; returns it."""
        if self._fd is None:
            raise LedgerError("ledger is closed")
        record["seq"] = self.next_seq
        record.setdefault("at", now().isoformat())
        line = orjson.dumps(record) + b"\n"
        written = os.write(self._fd, line)
        while written < len(line):  # only on a full disk or a signal; finish the line
            written += os.write(self._fd, line[written:])
        self.next_seq += 1
        return record

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
