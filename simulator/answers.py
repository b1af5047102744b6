"""One OSCU answer as the rules produce it: envelope fields plus the record to write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OK_MSG = "It is succeeded"
EMPTY_MSG = "There is no search result"


@dataclass(slots=True)
class Answer:
    """One OSCU answer, plus the ledger record to write before sending it (accepted writes)."""

    result_cd: str
    message: str
    data: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    #: 200 for every OSCU answer; 404 for a path (or feature) this host does not serve.
    http_status: int = 200
    #: Keys beside resultCd/data at the envelope's root (an init's cmcKey, as KRA's sandbox).
    root: dict[str, Any] | None = None


def ok(data: dict[str, Any] | None = None) -> Answer:
    return Answer("000", OK_MSG, data)


def fail(code: str, message: str) -> Answer:
    return Answer(code, message)


def invalid(message: str) -> Answer:
    return Answer("910", message)


def empty() -> Answer:
    """001: a lookup with nothing (new) to return."""
    return Answer("001", EMPTY_MSG)
