"""One HTTP answer (or failure) in, one :class:`CallOutcome` out: outcome.py's table as code.

Pure functions, no I/O, so every row of the table is testable without a socket. The order of
the checks is the policy:

1. HTTP 429 -> RATE_LIMITED and HTTP 401/403 -> AUTH, whatever the body says: a gateway in
   front of KRA answered, KRA's application never saw the request.
2. A readable OSCU envelope with a ``resultCd`` decides by its code, whatever the HTTP status
   (GavaConnect sends a valid ``001`` with HTTP 400; the code is the contract).
3. Otherwise the status decides, where a GavaConnect ``responseHeader.responseCode`` (or
   gateway ``header.responseCode``) inside an HTTP 2xx counts as the status: 502/503/504 and
   408 -> TRANSIENT; other 5xx -> UNKNOWN for a write, TRANSIENT for a lookup; other 4xx ->
   REJECTED (the server refused the request as malformed); a 1xx/2xx/3xx answer without a
   result code is not an envelope -> UNKNOWN for a write, TRANSIENT for a lookup.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from schemas.result_codes import ResultCode, normalize
from worker.oscu.errors import BadEnvelope, NotSent, OscuError, TokenRejected
from worker.oscu.outcome import CallOutcome, OutcomeKind

__all__ = [
    "Envelope",
    "classify_code",
    "classify_response",
    "normalize_code",
    "outcome_for_error",
    "parse_retry_after",
    "read_envelope",
]

#: KRA's messages are short; anything longer is a stack trace or an HTML page, not a reason.
MAX_MESSAGE_CHARS = 500

_ENVELOPE_KEYS = frozenset({"resultCd", "resultMsg", "resultDt", "data"})
_GATEWAY_RETRY = frozenset({502, 503, 504})
#: Statuses a gateway answers for itself; a body under them never speaks for KRA.
_GATEWAY_REFUSALS = frozenset({401, 403, 429})
#: Kinds for which a Retry-After header is worth passing on.
_MAY_WAIT = frozenset({OutcomeKind.RATE_LIMITED, OutcomeKind.TRANSIENT})


@dataclass(frozen=True, slots=True)
class Envelope:
    """What we could read out of a JSON answer, whichever front door sent it."""

    #: Normalised ``resultCd`` (``000`` for any success spelling), None if there was none.
    result_code: str | None = None
    message: str = ""
    data: dict[str, Any] | None = None
    result_dt: str | None = None
    #: A status embedded in the body (GavaConnect ``responseHeader.responseCode``, an Apigee
    #: token fault counts as 401); None when the body carries none.
    embedded_status: int | None = None
    #: Envelope keys beyond the four standard ones (e.g. a root-level ``cmcKey``).
    extra: dict[str, Any] = field(default_factory=dict)


def normalize_code(raw: object) -> str | None:
    """``resultCd`` as a three-digit string: ``0``/``00``/``0000`` -> ``000``, ``1`` -> ``001``."""
    if raw is None or isinstance(raw, bool | dict | list):
        return None
    code = normalize(raw if isinstance(raw, str | int) else str(raw))
    if not code:
        return None
    if code.isdigit() and len(code) < 3:
        code = code.zfill(3)
    return code


def _strip_keys(value: Any) -> Any:
    """Some hosts pad JSON keys with spaces (``"resultCd "``); compare them stripped."""
    if isinstance(value, dict):
        return {str(k).strip(): _strip_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_keys(v) for v in value]
    return value


def _as_status(raw: object) -> int | None:
    try:
        status = int(str(raw).strip())
    except ValueError:
        return None
    return status if 100 <= status <= 599 else None


def _text(raw: object) -> str:
    return "" if raw is None else str(raw)[:MAX_MESSAGE_CHARS]


def _from_result(doc: dict[str, Any], code: str) -> Envelope:
    raw_data = doc.get("data")
    extra = {k: v for k, v in doc.items() if k not in _ENVELOPE_KEYS}
    if raw_data is not None and not isinstance(raw_data, dict):
        extra["data"] = raw_data
    return Envelope(
        result_code=code,
        message=_text(doc.get("resultMsg")),
        data=raw_data if isinstance(raw_data, dict) else None,
        result_dt=None if doc.get("resultDt") is None else str(doc["resultDt"]),
        extra=extra,
    )


def _from_header(doc: dict[str, Any]) -> Envelope | None:
    header = doc.get("responseHeader", doc.get("header"))
    if isinstance(header, dict) and "responseCode" in header:
        message = next(
            (
                header[k]
                for k in ("customerMessage", "debugMessage", "responseMessage")
                if header.get(k)
            ),
            "",
        )
        body = doc.get("responseBody", doc.get("body"))
        return Envelope(
            message=_text(message),
            data=body if isinstance(body, dict) and body else None,
            embedded_status=_as_status(header["responseCode"]),
        )
    fault = doc.get("fault")
    if isinstance(fault, dict):
        text = _text(fault.get("faultstring"))
        return Envelope(message=text, embedded_status=401 if "token" in text.lower() else None)
    return None


def read_envelope(content: bytes) -> Envelope:
    """Read an OSCU answer defensively; raise :class:`BadEnvelope` if it is none we know.

    Accepts the spec's flat ``{resultCd, resultMsg, resultDt, data}``, the same nested in
    GavaConnect's ``responseBody`` (or ``body``), and GavaConnect/Apigee status-only bodies.
    """
    try:
        parsed = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEnvelope(f"answer is not JSON ({len(content)} bytes)") from exc
    if not isinstance(parsed, dict):
        raise BadEnvelope(f"answer is JSON {type(parsed).__name__}, not an object")
    doc = _strip_keys(parsed)
    for candidate in (doc, doc.get("responseBody"), doc.get("body")):
        if isinstance(candidate, dict):
            code = normalize_code(candidate.get("resultCd"))
            if code is not None:
                return _from_result(candidate, code)
    envelope = _from_header(doc)
    if envelope is None:
        raise BadEnvelope("JSON answer without resultCd")
    return envelope


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date; None if unusable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _unsure(write: bool) -> OutcomeKind:
    """No definitive answer: a write may have landed (UNKNOWN); a lookup can just be retried."""
    return OutcomeKind.UNKNOWN if write else OutcomeKind.TRANSIENT


def classify_code(code: str) -> OutcomeKind:
    """The kind for a normalised KRA result code; an unknown non-success code is a refusal.

    The same for writes and lookups: a code is a definitive answer, so nothing is unsure.
    """
    if code == ResultCode.SUCCESS:
        return OutcomeKind.ACCEPTED
    if code == ResultCode.NO_RESULT:
        return OutcomeKind.EMPTY
    if ResultCode.is_duplicate(code):
        return OutcomeKind.DUPLICATE
    if code == ResultCode.SEQUENCE_ERROR:
        return OutcomeKind.SEQUENCE
    if code == ResultCode.RATE_LIMITED:
        return OutcomeKind.RATE_LIMITED
    if ResultCode.is_server_transient(code):
        return OutcomeKind.TRANSIENT
    if code.isdigit() and 900 <= int(code) <= 905:
        return OutcomeKind.AUTH
    return OutcomeKind.REJECTED


def _classify_status(status: int, *, write: bool) -> OutcomeKind:
    if status == 429:
        return OutcomeKind.RATE_LIMITED
    if status in (401, 403):
        return OutcomeKind.AUTH
    if status in _GATEWAY_RETRY or status == 408:
        return OutcomeKind.TRANSIENT
    if 400 <= status < 500:
        return OutcomeKind.REJECTED
    return _unsure(write)


def classify_response(
    endpoint: str,
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    write: bool,
) -> CallOutcome:
    """Classify one HTTP answer; see the module docstring for the order of the checks."""
    retry_after = parse_retry_after(headers.get("retry-after"))
    try:
        envelope = read_envelope(content)
    except BadEnvelope as exc:
        envelope = Envelope(message=f"HTTP {status}: {exc}")
        error: str | None = "BadEnvelope"
    else:
        error = None
    extra = dict(envelope.extra)
    if envelope.result_code is not None and status not in _GATEWAY_REFUSALS:
        kind = classify_code(envelope.result_code)
    else:
        effective = status
        if envelope.embedded_status is not None and status < 300:
            effective = extra["embedded_status"] = envelope.embedded_status
        kind = _classify_status(effective, write=write)
    return CallOutcome(
        kind=kind,
        endpoint=endpoint,
        result_code=envelope.result_code,
        message=envelope.message or f"HTTP {status} without an OSCU result code",
        data=envelope.data,
        result_dt=envelope.result_dt,
        http_status=status,
        retry_after_s=retry_after if kind in _MAY_WAIT else None,
        error=error,
        extra=extra,
    )


def outcome_for_error(endpoint: str, exc: OscuError, *, write: bool) -> CallOutcome:
    """The outcome of a round trip that produced no answer at all."""
    cause = exc.__cause__
    error = type(cause).__name__ if cause is not None else type(exc).__name__
    if isinstance(exc, TokenRejected):
        kind, reached = OutcomeKind.AUTH, False
    elif isinstance(exc, NotSent):
        kind, reached = OutcomeKind.TRANSIENT, False
    else:
        kind, reached = _unsure(write), True
    return CallOutcome(
        kind=kind,
        endpoint=endpoint,
        message=_text(str(exc)),
        may_have_reached_kra=reached,
        error=error,
    )
