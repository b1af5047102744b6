"""verify_webhook (what receivers run) against the signer the worker uses."""

from __future__ import annotations

import json

import pytest

from producers.webhooks_verify import WebhookVerificationError, secret_bytes, verify_webhook
from worker.webhooks import generate_secret, sign

BODY = json.dumps({"event_id": "evt_7", "type": "job.accepted", "data": {"job_id": 3}}).encode()


def headers(secret: str, body: bytes = BODY, *, at: int = 1_800_000_000) -> dict[str, str]:
    return {
        "Webhook-Id": "evt_7",
        "Webhook-Timestamp": str(at),
        "Webhook-Signature": sign(secret_bytes(secret), "evt_7", at, body),
    }


def test_a_genuine_webhook_verifies_and_returns_the_event() -> None:
    secret = generate_secret()
    event = verify_webhook(secret, headers(secret), BODY, now=1_800_000_010)
    assert event["event_id"] == "evt_7" and event["data"] == {"job_id": 3}


def test_tampered_body_wrong_secret_old_timestamp_and_missing_headers_fail() -> None:
    secret = generate_secret()
    good = headers(secret)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify_webhook(secret, good, BODY.replace(b"3", b"4"), now=1_800_000_000)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify_webhook(generate_secret(), good, BODY, now=1_800_000_000)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(secret, good, BODY, now=1_800_000_000 + 301)
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook(secret, {"webhook-id": "evt_7"}, BODY)
    retimed = {**good, "Webhook-Timestamp": "1800000001"}  # replay with a fresh timestamp
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, retimed, BODY, now=1_800_000_000)


def test_several_signatures_during_rotation_and_plain_text_secrets() -> None:
    old, new = generate_secret(), "plain-text-secret"
    both = headers(new)
    both["Webhook-Signature"] = headers(old)["Webhook-Signature"] + " " + both["Webhook-Signature"]
    assert verify_webhook(new, both, BODY, now=1_800_000_000)["type"] == "job.accepted"
    assert verify_webhook(old, both, BODY.decode(), now=1_800_000_000)
