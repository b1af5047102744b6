"""Result webhooks: POST each accepted/dead/blocked event of a tin to its URL, signed.

Flow (the beat task ``deliver_webhooks`` runs :func:`deliver_webhooks` every few seconds):

1. schedule: every ``result_events`` row of a tin with a webhook gets one
   ``webhook_deliveries`` row (unique per event, so concurrent runs cannot double it);
2. claim: a bounded batch of due deliveries is claimed with a token and a deadline (see
   :func:`worker.outbox.intake_queries.claim_deliveries`), so several workers running the task
   never POST the same delivery at once;
3. POST, signed Standard-Webhooks style (see :mod:`producers.webhooks_verify`), then record
   the result under the claim: 2xx -> delivered; anything else -> retry at
   ``now + full-jitter backoff`` (:func:`worker.backoff.backoff_delay`), until
   ``max_attempts`` -> failed.

At least once: a worker that dies between the POST and the record leaves the claim to
expire, and the delivery is sent again with the same ``webhook-id``; receivers dedupe on it.
Secrets are stored Fernet-encrypted (the cmcKey key) and decrypted only to sign.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import Engine

from schemas.settings import Settings, WebhookSettings
from worker.backoff import backoff_delay
from worker.outbox import intake_queries as iq

log = logging.getLogger("etims_relay.webhooks")

#: Standard Webhooks: a signing key of 24 to 64 random bytes, written ``whsec_<base64>``.
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64
SECRET_FORM = "whsec_ followed by the base64 of 24 to 64 random bytes"  # noqa: S105 - a description
#: An event newer than this may still have a lower-id sibling uncommitted: the cursor waits.
SETTLE_S = 600.0
#: Deliveries claimed per round, and events scheduled per webhook per run.
CLAIM_BATCH = 20
SCHEDULE_BATCH = 1000
#: One run of the task stops claiming after this long (the beat starts the next).
RUN_DEADLINE_S = 20.0


@dataclass
class DeliveryReport:
    scheduled: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0


def generate_secret() -> str:
    """A new signing secret, ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_fernet(settings: Settings) -> MultiFernet:
    """The Fernet that encrypts webhook secrets: the same key as the devices' cmcKeys."""
    from worker.runtime import secrets_fernet

    return secrets_fernet(settings)


def set_webhook(
    engine: Engine, fernet: Fernet | MultiFernet, tin: str, url: str, secret: str
) -> None:
    """Point ``tin``'s events at ``url``; only events after this moment are sent."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("url must start with http:// or https://")
    _secret_key(secret)  # refused now, not at every delivery later
    encrypted = fernet.encrypt(secret.encode()).decode()
    with engine.begin() as conn:
        iq.upsert_webhook(conn, tin, url, encrypted, iq.max_event_id(conn, tin), time.time())


def remove_webhook(engine: Engine, tin: str) -> bool:
    with engine.begin() as conn:
        return iq.delete_webhook(conn, tin) == 1


def sign(secret_key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` (Standard Webhooks)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret: the Standard Webhooks form, the only one
    the official verifiers read as we do. The rule is restated (not imported) from
    ``producers.webhooks_verify.secret_bytes``: worker never imports producers, and receivers
    copy that module alone. A plain-text secret is refused (ValueError naming the form)."""
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


def event_payload(row: Any) -> bytes:
    """The JSON a receiver gets: event id and type around the job's result event."""
    data = json.loads(row.event_body)
    # The HTTP intake's id of the batch the job came in (None for CLI/CSV/direct enqueue).
    data["request_id"] = row.request_id
    payload = {
        "event_id": f"evt_{row.event_id}",
        "type": f"job.{row.event_state}",
        "created_at": float(row.event_created_at),
        "data": data,
    }
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def deliver_webhooks(
    engine: Engine,
    fernet: Fernet | MultiFernet,
    config: WebhookSettings,
    *,
    client: httpx.Client | None = None,
    deadline_s: float = RUN_DEADLINE_S,
) -> DeliveryReport:
    """Schedule new events, then POST due deliveries until none is left or time is up."""
    report = DeliveryReport()
    with engine.begin() as conn:
        for webhook in iq.list_webhooks(conn):
            report.scheduled += iq.schedule_deliveries(
                conn, webhook, time.time(), SETTLE_S, SCHEDULE_BATCH
            )
    own_client = client is None
    http = client or httpx.Client(timeout=config.timeout_s, follow_redirects=False)
    token = uuid.uuid4().hex
    stop_at = time.monotonic() + deadline_s
    claim_ttl = deadline_s + config.timeout_s * CLAIM_BATCH + 30
    try:
        while time.monotonic() < stop_at:
            with engine.begin() as conn:
                batch = iq.claim_deliveries(conn, token, time.time(), claim_ttl, CLAIM_BATCH)
            if not batch:
                break
            for row in batch:
                _deliver_one(engine, fernet, config, http, token, row, report)
    finally:
        if own_client:
            http.close()
    return report


def _deliver_one(
    engine: Engine,
    fernet: Fernet | MultiFernet,
    config: WebhookSettings,
    http: httpx.Client,
    token: str,
    row: Any,
    report: DeliveryReport,
) -> None:
    attempts = int(row.attempts) + 1
    status: int | None = None
    error: str | None = None
    if row.url is None:
        error = "webhook removed"
    else:
        status, error = _post(http, fernet, row)
    now = time.time()
    if status is not None and 200 <= status < 300:
        state, next_at = "delivered", now
        report.delivered += 1
    elif attempts >= config.max_attempts or row.url is None:
        state, next_at = "failed", now
        report.failed += 1
        log.warning("webhook event %s for %s failed for good: %s", row.event_id, row.tin, error)
    else:
        delay = backoff_delay(attempts, base_s=config.backoff_base_s, cap_s=config.backoff_cap_s)
        state, next_at = "pending", now + delay
        report.retried += 1
    with engine.begin() as conn:
        iq.finish_delivery(
            conn,
            int(row.id),
            token,
            state=state,
            attempts=attempts,
            next_attempt_at=next_at,
            status=status,
            error=error,
            now=now,
        )


def _post(
    http: httpx.Client, fernet: Fernet | MultiFernet, row: Any
) -> tuple[int | None, str | None]:
    body = event_payload(row)
    msg_id = f"evt_{row.event_id}"
    timestamp = int(time.time())
    secret = fernet.decrypt(str(row.secret_encrypted).encode()).decode()
    try:
        key = _secret_key(secret)
    except ValueError as exc:  # stored before plain text was refused: set a new secret
        return None, f"{exc}; set a new one with `etims-relay webhook set`"
    headers = {
        "content-type": "application/json",
        "user-agent": "etims-relay-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }
    try:
        response = http.post(str(row.url), content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, type(exc).__name__
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"
