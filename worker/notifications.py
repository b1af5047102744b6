"""Inbound authority notifications: device events pushed to ``PUT /v1/notifications``.

A sender is registered once (``etims-relay notifications register NAME``) and gets a
pre-shared key it sends as the ``ApiKey`` header; we keep only its SHA-256 (the key carries
256 random bits, so a plain hash is enough and a lookup by hash is safe).

One event, as JSON (unknown extra fields are kept in ``body``)::

    {"id": "evt-123",                       # the sender's delivery id: the idempotency key
     "event": "device_deactivated",         # see NotificationEvent
     "tin": "P051234567A", "bhf_id": "00", "serial": "SER-00",
     "message": "Device deactivated by KRA", "occurred_at": "2026-11-22T08:00:00+03:00"}

The same delivery twice is stored once and answered 200 both times (``duplicate`` the second
time); the same id with different content is a sender bug and is refused (409). Events that
flag a device count in ``etims_devices_flagged`` until an operator acknowledges them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Engine

from schemas.base import format_errors
from worker import metrics
from worker.outbox import ops_queries as oq
from worker.outbox import queries as q

log = logging.getLogger("etims_relay.notifications")

KEY_PREFIX = "etn_"


class NotificationEvent(StrEnum):
    """What an authority can tell us about a device."""

    CREDENTIALS_EXPIRING = "credentials_expiring"
    DEVICE_DATES_EXPIRING = "device_dates_expiring"
    DEVICE_DEACTIVATED = "device_deactivated"
    DEVICE_UNUSED = "device_unused"
    ISSUE_RECEIVED = "issue_received"


class InboundNotification(BaseModel):
    """The body of ``PUT /v1/notifications`` (extra fields are kept, not interpreted)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    event: NotificationEvent
    tin: str | None = Field(default=None, pattern=r"^[A-Z][0-9]{9}[A-Z]$")
    bhf_id: str | None = Field(default=None, pattern=r"^[0-9]{2}$")
    serial: str | None = Field(default=None, max_length=100)
    message: str | None = Field(default=None, max_length=4000)
    occurred_at: str | None = Field(default=None, max_length=40)

    @model_validator(mode="after")
    def _no_nul(self) -> InboundNotification:
        """Stored as text: a NUL byte (which PostgreSQL cannot store) is malformed input."""
        for name in ("id", "serial", "message", "occurred_at"):
            value = getattr(self, name)
            if value is not None and "\x00" in value:
                raise ValueError(f"{name} must not contain NUL characters")
        return self


class NotificationRejected(Exception):
    """The push is refused; ``status`` is the HTTP status, ``errors`` (path, message) pairs."""

    def __init__(self, status: int, errors: list[tuple[str, str]]) -> None:
        self.status = status
        self.errors = errors
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in errors))


@dataclass(frozen=True, slots=True)
class Received:
    id: int
    result: str  # "stored" or "duplicate"
    event: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def register(engine: Engine, name: str) -> str:
    """Register a sender; return its key (shown once, stored only as a hash)."""
    if not name.strip():
        raise ValueError("a registration needs a name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        oq.insert_registration(conn, name.strip(), _hash(key), time.time())
    return key


def receive(engine: Engine, api_key: str | None, raw: Any) -> Received:
    """Authenticate, validate and store one pushed event (idempotent per delivery id)."""
    if not api_key:
        raise NotificationRejected(401, [("", "missing ApiKey header")])
    with engine.connect() as conn:
        sender = oq.registration_by_key_hash(conn, _hash(api_key))
    if sender is None:
        raise NotificationRejected(401, [("", "unknown or revoked ApiKey")])
    if not isinstance(raw, dict):
        raise NotificationRejected(422, [("", "the body must be a JSON object")])
    try:
        event = InboundNotification.model_validate(raw)
    except ValidationError as exc:
        raise NotificationRejected(422, format_errors(exc)) from exc
    body = json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    values = {
        "registration_id": int(sender.id),
        "delivery_id": event.id,
        "event": event.event.value,
        "tin": event.tin,
        "bhf_id": event.bhf_id,
        "serial": event.serial,
        "message": event.message,
        "occurred_at": event.occurred_at,
        "body": body,
        "received_at": time.time(),
    }
    with engine.begin() as conn:
        created = oq.insert_notification(conn, values)
        row = oq.get_notification(conn, int(sender.id), event.id)
    assert row is not None
    if not created and row.body != body:
        raise NotificationRejected(
            409, [("id", f"delivery {event.id!r} was already received with different content")]
        )
    result = "stored" if created else "duplicate"
    metrics.NOTIFICATIONS_RECEIVED.labels(event.event.value, result).inc()
    log.info(
        "notification %s from %s: %s %s/%s (%s)",
        event.id,
        sender.name,
        event.event.value,
        event.tin,
        event.bhf_id,
        result,
        extra={"event": "notification", "notification_event": event.event.value},
    )
    return Received(int(row.id), result, event.event.value)


def acknowledge(engine: Engine, notification_id: int, actor: str, reason: str = "") -> bool:
    """An operator dealt with the event; audited. False if unknown or already acknowledged."""
    now = time.time()
    with engine.begin() as conn:
        done = oq.acknowledge_notification(conn, notification_id, actor, now) > 0
        if done:
            q.insert_audit(
                conn,
                {
                    "at": now,
                    "actor": actor,
                    "action": "notification_ack",
                    "reason": reason or None,
                    "details": json.dumps({"notification_id": notification_id}),
                },
            )
    return done


def notification_view(row: Any) -> dict[str, Any]:
    """A stored event as the CLI shows it."""
    return {
        "id": row.id,
        "sender": getattr(row, "sender", None),
        "delivery_id": row.delivery_id,
        "event": row.event,
        "tin": row.tin,
        "bhf_id": row.bhf_id,
        "serial": row.serial,
        "message": row.message,
        "occurred_at": row.occurred_at,
        "received_at": row.received_at,
        "acknowledged_at": row.acknowledged_at,
        "acknowledged_by": row.acknowledged_by,
    }
