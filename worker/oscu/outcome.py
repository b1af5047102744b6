"""The typed result of one OSCU call: what the pipeline needs to decide the next step.

Every call returns exactly one :class:`CallOutcome`; the client never raises for a network
or KRA failure. The split that matters most is between ``TRANSIENT`` (the request provably
never reached KRA, safe to send again as if new) and ``UNKNOWN`` (it may have been recorded:
resend the identical body and number, never a new one). See invariant 2 in README.md.

=============== =============================================================== ==============
kind            when                                                            next step
=============== =============================================================== ==============
ACCEPTED        000                                                             done
EMPTY           001 (lookups)                                                   done, no rows
DUPLICATE       921, 994                                                        resend: ask
                                                                                KRA; first
                                                                                send: 921 park,
                                                                                994 dead
SEQUENCE        922                                                             retry a few
                                                                                times, then dead
RATE_LIMITED    990, HTTP 429 (``retry_after_s`` from Retry-After)               back off
TRANSIENT       connect refused/timeout, DNS, pool timeout, 894/896/99x,         back off, resend
                HTTP 502/503/504 from a gateway
UNKNOWN         read/write timeout or reset after sending, non-JSON or other     resend the same
                5xx answer to a write                                           body
REJECTED        910, 911, 912 and any other definitive refusal                   dead (systemic:
                                                                                park)
AUTH            900-905, HTTP 401/403                                           park, fix device
=============== =============================================================== ==============

A job that may already be at KRA is never ended by an answer alone: worker/decide.py asks
for KRA's lookup of its number first (worker/recovery.py).

Not every TRANSIENT is "never reached KRA": 894/896/99x and HTTP 502/503/504 are answers from
KRA or its gateway, so they come with ``may_have_reached_kra=True``; only a connect-level
failure (``worker.oscu.errors.NotSent``) sets it False. Decide whether a number may be
reused from ``may_have_reached_kra``, not from ``kind`` alone. MaybeSent failures and
unreadable answers are UNKNOWN for writes but TRANSIENT for lookups (safe to repeat).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.oscu._secrets import redact


class OutcomeKind(StrEnum):
    ACCEPTED = "accepted"
    EMPTY = "empty"
    DUPLICATE = "duplicate"
    SEQUENCE = "sequence"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    AUTH = "auth"


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """One OSCU call's result. ``data`` is the envelope's ``data`` (None for most writes)."""

    kind: OutcomeKind
    endpoint: str
    #: KRA's resultCd when an envelope was read, else None.
    result_code: str | None = None
    #: KRA's resultMsg, or a description of the transport failure. Never holds a secret.
    message: str = ""
    data: dict[str, Any] | None = None
    #: KRA's resultDt (yyyyMMddHHmmss), kept for incremental lookups.
    result_dt: str | None = None
    http_status: int | None = None
    #: Seconds the server asked us to wait (Retry-After), for RATE_LIMITED/TRANSIENT.
    retry_after_s: float | None = None
    latency_s: float = 0.0
    #: Whether the request may have reached KRA's application (False only when provably not).
    may_have_reached_kra: bool = True
    #: Name of the transport error class, if any (for metrics labels and logs).
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.kind in (OutcomeKind.ACCEPTED, OutcomeKind.EMPTY)

    def __repr__(self) -> str:
        """Like the generated repr, but ``data``/``extra`` go through :func:`redact`.

        ``selectInitOsdcInfo`` returns the device's new cmcKey inside ``data``; an outcome
        that ends up in a log line or an exception message must not carry it (invariant 8).
        """
        parts = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in ("data", "extra"):
                value = redact(value)
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"
