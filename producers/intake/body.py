"""Parse the body of POST /v1/jobs by hand, before anything is written.

Why by hand: amounts must stay exact (``parse_float=Decimal``), and every problem must come
back as a 422 that names the record and the field (invariant 7) instead of a framework error
or a 500: malformed JSON, NaN/Infinity, absurd nesting, strings the database cannot store
(NUL, lone surrogates), a batch of the wrong size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from producers.intake.errors import ApiError
from producers.intake.models import MAX_JOBS_PER_REQUEST, ErrorItem

#: Deeper JSON than this is refused before Python's recursion limit is anywhere near.
MAX_DEPTH = 32


def parse_jobs(raw: bytes) -> list[Any]:
    """The ``jobs`` list of a request body; raises :class:`ApiError` (422) with the reason."""
    document = _load(raw)
    if not isinstance(document, dict):
        raise _invalid(None, "body", "must be a JSON object with a `jobs` list")
    extra = sorted(k for k in document if k != "jobs")
    if extra:
        raise _invalid(None, f"body.{extra[0]}", 'unknown field; the body is {"jobs": [...]}')
    records = document.get("jobs")
    if not isinstance(records, list):
        raise _invalid(None, "jobs", "required: a list of 1 to 100 job envelopes")
    if not records:
        raise _invalid(None, "jobs", "empty: send at least one job envelope")
    if len(records) > MAX_JOBS_PER_REQUEST:
        raise _invalid(
            None,
            "jobs",
            f"at most {MAX_JOBS_PER_REQUEST} jobs per request, got {len(records)}: split the batch",
        )
    problems = [
        ErrorItem(index=index, path=path or None, message=message)
        for index, record in enumerate(records)
        for path, message in _unstorable(record, "")
    ]
    if problems:
        raise ApiError(422, problems)
    return records


def _load(raw: bytes) -> Any:
    try:
        document = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except RecursionError:
        raise _invalid(None, "body", "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(None, "body", f"malformed JSON: {_short(exc)}") from None
    if _depth(document) > MAX_DEPTH:
        raise _invalid(None, "body", f"JSON nested deeper than {MAX_DEPTH} levels")
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _short(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)[:200]


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def _unstorable(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Strings no database column can hold: NUL bytes and unpaired surrogates."""
    if isinstance(value, str):
        if _bad_text(value):
            yield path, "text must not contain NUL characters or unpaired surrogates"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if _bad_text(str(key)):
                yield path or "(record)", "field names must be valid text without NUL"
            else:
                yield from _unstorable(item, child)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _unstorable(item, f"{path}.{position}" if path else str(position))


def _bad_text(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _invalid(index: int | None, path: str, message: str) -> ApiError:
    return ApiError(422, [ErrorItem(index=index, path=path, message=message)])
