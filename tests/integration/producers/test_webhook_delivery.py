"""Result webhooks on the real outbox (SQLite and PostgreSQL): KRA accepts a job through the
in-process pipeline, and a receiver gets the signed event, through failures and concurrency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import standardwebhooks
from cryptography.fernet import Fernet

from producers import builders as b
from producers.enqueue import enqueue
from producers.webhooks_verify import WebhookVerificationError, verify_webhook
from schemas.settings import WebhookSettings
from tests.integration.pipeline_fixtures import Pipeline
from tests.workload import TIN, item_code
from worker.outbox import intake_queries as iq
from worker.webhooks import deliver_webhooks, generate_secret, set_webhook

FAST = WebhookSettings(backoff_base_s=0.05, backoff_cap_s=0.1, max_attempts=5, timeout_s=2)


class Receiver:
    """An HTTP receiver that answers ``fail_first`` requests with 500, then 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    status = 500 if len(receiver.requests) < receiver.fail_first else 200
                    receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/etims"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(fail_first: int = 0) -> Receiver:
        made.append(Receiver(fail_first))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def _items(count: int) -> list[dict[str, Any]]:
    return [
        b.item(
            TIN, "00", f"item-{n}", item_cd=item_code(n), item_nm=f"Item {n}", price=Decimal("116")
        )
        for n in range(1, count + 1)
    ]


def test_a_receiver_that_fails_twice_then_succeeds_gets_the_signed_event(
    pipeline: Pipeline, receiver_factory: Any
) -> None:
    # Given a webhook for the tin, and a receiver that fails twice
    fernet = Fernet(Fernet.generate_key())
    secret = generate_secret()
    receiver = receiver_factory(fail_first=2)
    engine = pipeline.runtime.engine
    set_webhook(engine, fernet, TIN, receiver.url, secret)

    # When KRA accepts a job that came in through the intake, and deliveries run (with backoff)
    enqueue(engine, _items(1), request_id="req-till03-0001")
    pipeline.drain()
    deadline = time.time() + 20
    while not any(status == 200 for _, _, status in receiver.requests):
        assert time.time() < deadline, receiver.requests
        deliver_webhooks(engine, fernet, FAST)
        time.sleep(0.05)

    # Then the third attempt got it, each attempt carrying the same event id and a valid signature
    assert [status for _, _, status in receiver.requests] == [500, 500, 200]
    ids = {headers["webhook-id"] for headers, _, _ in receiver.requests}
    assert len(ids) == 1
    headers, body, _ = receiver.requests[-1]
    # verified by the official Standard Webhooks library, as a receiver would, and by ours
    event = standardwebhooks.Webhook(secret).verify(body, headers)
    assert event == verify_webhook(secret, headers, body)
    assert event["type"] == "job.accepted" and event["event_id"] == ids.pop()
    assert event["data"]["request_id"] == "req-till03-0001"
    assert event["data"]["idempotency_key"] == "item-1"
    assert event["data"]["state"] == "accepted" and event["data"]["result_code"] == "000"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, headers, body.replace(b"accepted", b"rejected"))
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body.replace(b"accepted", b"rejected"), headers)
    assert secret not in json.dumps([h for h, _, _ in receiver.requests])
    with engine.connect() as conn:
        assert iq.delivery_counts(conn, TIN) == {"pending": 0, "delivered": 1, "failed": 0}
    # And nothing more is sent once delivered
    deliver_webhooks(engine, fernet, FAST)
    assert len(receiver.requests) == 3


def test_a_receiver_that_never_answers_2xx_is_given_up_after_max_attempts(
    pipeline: Pipeline, receiver_factory: Any
) -> None:
    fernet = Fernet(Fernet.generate_key())
    receiver = receiver_factory(fail_first=1000)
    engine = pipeline.runtime.engine
    set_webhook(engine, fernet, TIN, receiver.url, generate_secret())
    pipeline.enqueue(_items(1))
    pipeline.drain()
    for _ in range(40):
        deliver_webhooks(engine, fernet, FAST)
        time.sleep(0.05)
    assert len(receiver.requests) == FAST.max_attempts
    with engine.connect() as conn:
        assert iq.delivery_counts(conn, TIN)["failed"] == 1


def test_concurrent_delivery_runs_send_each_event_once(
    pipeline: Pipeline, receiver_factory: Any
) -> None:
    # Given 30 accepted jobs and a healthy receiver
    fernet = Fernet(Fernet.generate_key())
    receiver = receiver_factory()
    engine = pipeline.runtime.engine
    set_webhook(engine, fernet, TIN, receiver.url, generate_secret())
    pipeline.enqueue(_items(30))
    pipeline.drain()
    # When four workers run the delivery task at the same moment
    threads = [
        threading.Thread(target=deliver_webhooks, args=(engine, fernet, FAST)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every event went out exactly once
    ids = [headers["webhook-id"] for headers, _, _ in receiver.requests]
    assert len(ids) == 30 and len(set(ids)) == 30


def test_a_secret_that_could_never_sign_is_refused_when_it_is_set(pipeline: Pipeline) -> None:
    # A bad whsec_ secret would fail every delivery later, with nothing marked failed
    fernet = Fernet(Fernet.generate_key())
    engine = pipeline.runtime.engine
    for bad in ("whsec_not base64!", ""):
        with pytest.raises(ValueError, match="secret"):
            set_webhook(engine, fernet, TIN, "http://127.0.0.1:9/hook", bad)


def test_a_plain_text_secret_is_refused_with_the_form_to_use(pipeline: Pipeline) -> None:
    # A plain-text secret passes no official Standard Webhooks verifier: refused when set
    fernet = Fernet(Fernet.generate_key())
    engine = pipeline.runtime.engine
    with pytest.raises(ValueError, match="must be whsec_ followed by the base64") as caught:
        set_webhook(engine, fernet, TIN, "http://127.0.0.1:9/hook", "correct-horse-battery")
    assert "standardwebhooks" in str(caught.value)
    with engine.connect() as conn:
        assert iq.get_webhook(conn, TIN) is None


def test_a_plain_text_secret_stored_earlier_fails_its_deliveries_with_that_message(
    pipeline: Pipeline, receiver_factory: Any
) -> None:
    # Given a webhook whose secret was stored as plain text before the form was enforced
    fernet = Fernet(Fernet.generate_key())
    receiver = receiver_factory()
    engine = pipeline.runtime.engine
    with engine.begin() as conn:
        legacy = fernet.encrypt(b"correct-horse-battery").decode()
        iq.upsert_webhook(conn, TIN, receiver.url, legacy, iq.max_event_id(conn, TIN), time.time())
    pipeline.enqueue(_items(1))
    pipeline.drain()
    # When deliveries run until the event is given up
    for _ in range(FAST.max_attempts):
        deliver_webhooks(engine, fernet, FAST)
        time.sleep(0.12)
    # Then nothing unverifiable was POSTed, and the operator sees why in `webhook show`
    assert receiver.requests == []
    with engine.connect() as conn:
        assert iq.delivery_counts(conn, TIN)["failed"] == 1
        (failure,) = iq.list_deliveries(conn, TIN, 10, ["failed"])
    assert "whsec_" in failure.last_error and "webhook set" in failure.last_error
