"""Check a result webhook from etims-relay: ``verify_webhook(secret, headers, body)``.

etims-relay signs each POST the Standard Webhooks way (https://www.standardwebhooks.com):

- ``webhook-id``: the event id (``evt_<n>``): the same on every retry, so dedupe on it;
- ``webhook-timestamp``: UNIX seconds when this attempt was sent;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<raw body>">``,
  possibly several space-separated (during a secret rotation).

The HMAC key is the secret's bytes after the ``whsec_`` prefix, base64-decoded: the form the
official ``standardwebhooks`` libraries read, so a receiver may use them instead of this
module. Only that form is accepted: a plain-text secret would be read differently by those
libraries (they base64-decode whatever follows the prefix), so etims-relay refuses it.
Verify the *raw* body, before any JSON parsing, and refuse old timestamps so a captured
request cannot be replayed later.

The event's ``data`` carries the job (``job_id``, ``idempotency_key``, ``kind``, ``state``,
KRA's result) and ``request_id``: the id the HTTP intake answered the batch with (null for
jobs enqueued another way), so a till can match a result to the request it sent.

This module has no dependency beyond the standard library, so a receiver can copy it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_TOLERANCE_S", "WebhookVerificationError", "secret_bytes", "verify_webhook"]

#: How far a webhook's timestamp may be from the receiver's clock.
DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(ValueError):
    """The request is not a genuine, recent webhook from etims-relay: reject it (400/401)."""


#: Standard Webhooks: a signing key of 24 to 64 random bytes.
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64
SECRET_FORM = "whsec_ followed by the base64 of 24 to 64 random bytes"  # noqa: S105 - a description


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` webhook secret; ValueError for any other form."""
    if not secret.startswith("whsec_"):
        raise ValueError(
            f"secret: must be {SECRET_FORM} (a plain-text secret does not verify with the "
            "standardwebhooks libraries); let `etims-relay webhook set` generate one"
        )
    try:
        key = base64.b64decode(secret[len("whsec_") :], validate=True)
    except binascii.Error:
        raise ValueError(
            f"secret: must be {SECRET_FORM}: what follows whsec_ is not base64"
        ) from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"secret: must be {SECRET_FORM} (this one decodes to {len(key)} bytes)")
    return key


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Return the event (parsed JSON) if the signature and timestamp are right, else raise.

    ``headers`` may be any mapping; names are matched case-insensitively.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too old or in the future")
    raw = body.encode() if isinstance(body, str) else body
    signed = f"{msg_id}.{sent_at}.".encode() + raw
    expected = base64.b64encode(hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            event: dict[str, Any] = json.loads(raw)
            return event
    raise WebhookVerificationError("no matching signature")
