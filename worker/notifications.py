"""Inbound authority notifications: device events pushed to ``PUT /v1/notifications``.

A sender is registered once (``etims-relay notifications register NAME``) and gets a
pre-shared key it sends as ``Authorization: ApiKey <key>`` (or as a bare ``ApiKey`` header);
we keep only its SHA-256 (the key carries 256 random bits, so a plain hash is enough and a
lookup by hash is safe).

Two body formats are accepted. The authority's documented one (``{"Id": serial, "Type":
"PosDeactivated", "Message": {...}}``, see :mod:`worker.authority_notifications`) carries no
delivery id, so a delivery is recognised by its content: the same event twice is stored once.
Our own format, as JSON (unknown extra fields are kept in ``body``)::

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
from schemas.types import BHF_ID_RE, TIN_RE
from worker import authority_notifications as authority
from worker import metrics
from worker.outbox import ops_queries as oq

log = logging.getLogger("etims_relay.notifications")

KEY_PREFIX = "etn_"


class NotificationEvent(StrEnum):
    """What an authority can tell us about a device."""

    CREDENTIALS_EXPIRING = "credentials_expiring"
    DEVICE_DATES_EXPIRING = "device_dates_expiring"
    DEVICE_DEACTIVATED = "device_deactivated"
    DEVICE_UNUSED = "device_unused"
    ISSUE_RECEIVED = "issue_received"


#: The authority's ``Type`` -> our event name (the one metrics, alerts and the CLI use).
EVENT_OF_TYPE = {
    authority.AuthorityEventType.POS_CREDENTIAL_EXPIRATION: NotificationEvent.CREDENTIALS_EXPIRING,
    authority.AuthorityEventType.POS_DATES_EXPIRATION: NotificationEvent.DEVICE_DATES_EXPIRING,
    authority.AuthorityEventType.POS_DEACTIVATED: NotificationEvent.DEVICE_DEACTIVATED,
    authority.AuthorityEventType.POS_DEVICE_UNUSED: NotificationEvent.DEVICE_UNUSED,
    authority.AuthorityEventType.ISSUE_RECEIVED: NotificationEvent.ISSUE_RECEIVED,
}


class InboundNotification(BaseModel):
    """The body of ``PUT /v1/notifications`` (extra fields are kept, not interpreted)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    event: NotificationEvent
    tin: str | None = Field(default=None, pattern=TIN_RE)
    bhf_id: str | None = Field(default=None, pattern=BHF_ID_RE)
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


def authenticate(engine: Engine, api_key: str | None) -> Any:
    """The live registration of this key; 401 (as :class:`NotificationRejected`) otherwise."""
    if not api_key:
        raise NotificationRejected(401, [("", "missing key: send Authorization: ApiKey <key>")])
    with engine.connect() as conn:
        sender = oq.registration_by_key_hash(conn, _hash(api_key))
    if sender is None:
        raise NotificationRejected(401, [("", "unknown or revoked ApiKey")])
    return sender


def receive(
    engine: Engine, api_key: str | None, raw: Any, *, accept_language: str | None = None
) -> Received:
    """Authenticate, validate and store one pushed event (idempotent per delivery)."""
    sender = authenticate(engine, api_key)
    if not isinstance(raw, dict):
        raise NotificationRejected(422, [("", "the body must be a JSON object")])
    if authority.is_authority_format(raw):
        values = _authority_values(engine, raw)
    else:
        values = _own_values(raw)
    values.update(
        registration_id=int(sender.id),
        language=authority.language(accept_language),
        received_at=time.time(),
    )
    delivery_id, body, event = values["delivery_id"], values["body"], values["event"]
    with engine.begin() as conn:
        created = oq.insert_notification(conn, values)
        row = oq.get_notification(conn, int(sender.id), delivery_id)
    assert row is not None
    if not created and row.body != body:
        raise NotificationRejected(
            409, [("id", f"delivery {delivery_id!r} was already received with different content")]
        )
    result = "stored" if created else "duplicate"
    metrics.NOTIFICATIONS_RECEIVED.labels(event, result).inc()
    log.info(
        "notification %s from %s: %s %s/%s (%s)",
        delivery_id,
        sender.name,
        event,
        values["tin"],
        values["bhf_id"],
        result,
        extra={"event": "notification", "notification_event": event},
    )
    return Received(int(row.id), result, event)


def _own_values(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        event = InboundNotification.model_validate(raw)
    except ValidationError as exc:
        raise NotificationRejected(422, format_errors(exc)) from exc
    return {
        "delivery_id": event.id,
        "event": event.event.value,
        "tin": event.tin,
        "bhf_id": event.bhf_id,
        "serial": event.serial,
        "message": event.message,
        "occurred_at": event.occurred_at,
        "body": json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":")),
    }


def _authority_values(engine: Engine, raw: dict[str, Any]) -> dict[str, Any]:
    """The authority's format: the device is named by serial; the delivery by its content."""
    kind = raw.get("Type")
    types = [t.value for t in authority.AuthorityEventType]
    if kind not in types:
        raise NotificationRejected(422, [("Type", f"must be one of {', '.join(types)}")])
    try:
        event = authority.AUTHORITY_EVENT.validate_python(raw)
    except ValidationError as exc:  # paths start with the tag: drop it
        errors = [(path.removeprefix(f"{kind}.").removeprefix(kind), message)
                  for path, message in format_errors(exc)]  # fmt: skip
        raise NotificationRejected(422, errors) from exc
    body = authority.canonical_body(event)
    with engine.connect() as conn:
        device = oq.device_by_serial(conn, event.Id)
    message = event.Message.model_dump(mode="json", exclude_none=True)
    return {
        "delivery_id": authority.delivery_key(body),
        "event": EVENT_OF_TYPE[event.Type].value,
        "tin": None if device is None else device.tin,
        "bhf_id": None if device is None else device.bhf_id,
        "serial": event.Id,
        "message": json.dumps(message, sort_keys=True, ensure_ascii=False) if message else None,
        "occurred_at": None,
        "body": body,
    }


def ping(engine: Engine, api_key: str | None, raw: Any) -> dict[str, str]:
    """The sender's visibility check: authenticate, then echo the registration number."""
    authenticate(engine, api_key)
    rin = raw.get("rin") if isinstance(raw, dict) else None
    if not isinstance(rin, str) or not rin.strip() or len(rin) > 100 or "\x00" in rin:
        raise NotificationRejected(422, [("rin", "required: the registration number to echo")])
    return {"rin": rin}


def acknowledge(engine: Engine, notification_id: int, actor: str, reason: str = "") -> bool:
    """An operator dealt with the event; audited. False if unknown or already acknowledged."""
    now = time.time()
    with engine.begin() as conn:
        done = oq.acknowledge_notification(conn, notification_id, actor, now) > 0
        if done:
            oq.insert_audit(
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
        "language": row.language,
        "received_at": row.received_at,
        "acknowledged_at": row.acknowledged_at,
        "acknowledged_by": row.acknowledged_by,
    }
