"""The authority's documented push format for device events, one pydantic model per type.

``PUT /v1/notifications`` with ``Authorization: ApiKey <key>``, ``Accept-Language: ar|en`` and
a body naming the device by its serial::

    {"Id": "SER-00", "Type": "PosDeactivated", "Message": {...}}

The five types and the envelope (``Id``: the device serial, ``Type``, ``Message``) are the
documented part. The fields *inside* ``Message`` are not published in any source we could read,
so each model below declares the fields we assume (all optional, PascalCase like the envelope)
and keeps any other field as received: an unexpected field is stored, never refused. Only a
``Message`` that is not a JSON object, or a declared field of the wrong type, is refused.

``Id`` is the device serial, not a delivery id, so a redelivery is recognised by its content:
:func:`delivery_key` hashes the canonical body.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

#: Languages the authority sends in ``Accept-Language``.
LANGUAGES = ("ar", "en")

_Text = Annotated[str | None, Field(max_length=4000)]


class AuthorityEventType(StrEnum):
    """The ``Type`` values of the authority's device events."""

    POS_CREDENTIAL_EXPIRATION = "PosCredentialExpiration"
    POS_DATES_EXPIRATION = "PosDatesExpiration"
    POS_DEACTIVATED = "PosDeactivated"
    POS_DEVICE_UNUSED = "PosDeviceUnused"
    ISSUE_RECEIVED = "IssueReceived"


class _Message(BaseModel):
    """Fields we assume in ``Message``; anything else is kept as received."""

    model_config = ConfigDict(extra="allow", frozen=True)

    #: A human-readable text, in the delivery's language.
    Text: _Text = None

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """Stored as text: a NUL byte (which PostgreSQL cannot store) is malformed input."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class PosCredentialExpirationMessage(_Message):
    """The device's credentials (its client secret) expire soon or have expired."""

    ExpirationDate: _Text = None


class PosDatesExpirationMessage(_Message):
    """The device's validity dates (activity period) end soon or have ended."""

    ExpirationDate: _Text = None


class PosDeactivatedMessage(_Message):
    """The authority deactivated the device."""

    DeactivationDate: _Text = None
    Reason: _Text = None


class PosDeviceUnusedMessage(_Message):
    """The device has sent nothing for a while."""

    LastUsedDate: _Text = None
    UnusedDays: int | None = Field(default=None, ge=0)


class IssueReceivedMessage(_Message):
    """An issue about the device was raised with the authority."""

    IssueId: _Text = None
    Description: _Text = None


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    #: The device serial number (String 100), not a delivery id.
    Id: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00]+$")


class PosCredentialExpiration(_Event):
    Type: Literal[AuthorityEventType.POS_CREDENTIAL_EXPIRATION]
    Message: PosCredentialExpirationMessage = Field(default_factory=PosCredentialExpirationMessage)


class PosDatesExpiration(_Event):
    Type: Literal[AuthorityEventType.POS_DATES_EXPIRATION]
    Message: PosDatesExpirationMessage = Field(default_factory=PosDatesExpirationMessage)


class PosDeactivated(_Event):
    Type: Literal[AuthorityEventType.POS_DEACTIVATED]
    Message: PosDeactivatedMessage = Field(default_factory=PosDeactivatedMessage)


class PosDeviceUnused(_Event):
    Type: Literal[AuthorityEventType.POS_DEVICE_UNUSED]
    Message: PosDeviceUnusedMessage = Field(default_factory=PosDeviceUnusedMessage)


class IssueReceived(_Event):
    Type: Literal[AuthorityEventType.ISSUE_RECEIVED]
    Message: IssueReceivedMessage = Field(default_factory=IssueReceivedMessage)


AuthorityEvent = Annotated[
    PosCredentialExpiration | PosDatesExpiration | PosDeactivated | PosDeviceUnused | IssueReceived,
    Field(discriminator="Type"),
]

AUTHORITY_EVENT: TypeAdapter[AuthorityEvent] = TypeAdapter(AuthorityEvent)


def is_authority_format(raw: Any) -> bool:
    """The documented envelope (``Type``) rather than our own (``event``)."""
    return isinstance(raw, dict) and "Type" in raw


def canonical_body(event: BaseModel) -> str:
    """The event as stored: sorted keys, no whitespace, every field as received."""
    return json.dumps(
        event.model_dump(mode="json", exclude_unset=True), sort_keys=True, separators=(",", ":")
    )


def delivery_key(body: str) -> str:
    """The idempotency key of a delivery: the same event delivered twice has the same key."""
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def language(header: str | None) -> str | None:
    """``ar`` or ``en`` from an ``Accept-Language`` header (first tag), else None."""
    if not header:
        return None
    first = header.split(",")[0].split(";")[0].strip().lower()
    primary = first.split("-")[0]
    return primary if primary in LANGUAGES else None
