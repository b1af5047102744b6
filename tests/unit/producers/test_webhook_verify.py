"""verify_webhook (what receivers run) against the signer the worker uses."""

from __future__ import annotations

import base64
import json
import time

import pytest
import standardwebhooks

from producers.webhooks_verify import WebhookVerificationError, secret_bytes, verify_webhook
from worker.webhooks import _secret_key, generate_secret, sign

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


def test_several_signatures_during_rotation() -> None:
    old, new = generate_secret(), generate_secret()
    both = headers(new)
    both["Webhook-Signature"] = headers(old)["Webhook-Signature"] + " " + both["Webhook-Signature"]
    assert verify_webhook(new, both, BODY, now=1_800_000_000)["type"] == "job.accepted"
    assert verify_webhook(old, both, BODY.decode(), now=1_800_000_000)


def test_what_the_worker_signs_verifies_with_the_official_standardwebhooks_library() -> None:
    secret = generate_secret()
    at = int(time.time())
    assert standardwebhooks.Webhook(secret).verify(BODY, headers(secret, at=at)) == json.loads(BODY)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_secret()).verify(BODY, headers(secret, at=at))


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("plain-text-secret", "standardwebhooks libraries"),
        ("whsec_not base64!", "not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
        ("", "must be whsec_"),
    ],
)
def test_only_whsec_secrets_are_accepted_with_a_clear_error(secret: str, why: str) -> None:
    with pytest.raises(ValueError, match="must be whsec_ followed by the base64") as caught:
        secret_bytes(secret)
    assert why in str(caught.value)
    with pytest.raises(ValueError, match=why):
        _secret_key(secret)
