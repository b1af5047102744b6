"""PUT /v1/notifications: authenticated by a registration's ApiKey, idempotent per delivery id,
malformed bodies refused with a 4xx; stored events show in the CLI, in
``etims_devices_flagged`` (the "device deactivated" alert's metric) and clear on ack."""

from __future__ import annotations

import json
import subprocess

from sqlalchemy import func, select

from tests.helpers import ETIMS_RELAY, wait_until
from tests.integration.ops.conftest import scrape
from tests.integration.producers.intake_fixtures import start_intake
from tests.workload import TIN
from worker import metrics
from worker.notifications import register
from worker.outbox.ops_models import notifications

DEACTIVATED = {
    "id": "evt-0001",
    "event": "device_deactivated",
    "tin": TIN,
    "bhf_id": "00",
    "serial": "SER-00",
    "message": "Device deactivated by KRA",
    "occurred_at": "2026-11-22T08:00:00+03:00",
}


def flagged(url: str, event: str) -> float:
    return scrape(f"{url}/metrics")[("etims_devices_flagged", (("event", event),))]


def test_a_pushed_event_is_stored_once_and_flags_the_device(pg_url: str, secret_key: str) -> None:
    intake = start_intake(pg_url)
    try:
        key = register(intake.engine, "kra-sandbox")
        put = intake.client()

        # When the authority pushes the same delivery twice
        first = put.put("/v1/notifications", json=DEACTIVATED, headers={"ApiKey": key})
        again = put.put("/v1/notifications", json=DEACTIVATED, headers={"ApiKey": key})

        # Then both are answered 200, and it is stored once
        assert (first.status_code, first.json()["result"]) == (200, "stored")
        assert (again.status_code, again.json()["result"]) == (200, "duplicate")
        assert again.json()["id"] == first.json()["id"]
        with intake.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(notifications)).scalar_one()
        assert count == 1

        # ... the same delivery id with other content, bad keys and bad bodies are refused
        changed = {**DEACTIVATED, "message": "something else"}
        assert (
            put.put("/v1/notifications", json=changed, headers={"ApiKey": key}).status_code == 409
        )
        assert put.put("/v1/notifications", json=DEACTIVATED).status_code == 401
        wrong = put.put("/v1/notifications", json=DEACTIVATED, headers={"ApiKey": "etn_nope"})
        assert wrong.status_code == 401
        raw = put.put("/v1/notifications", content=b"{not json", headers={"ApiKey": key})
        assert raw.status_code == 400 and raw.json()["errors"]
        unknown = {**DEACTIVATED, "id": "evt-2", "event": "device_exploded"}
        bad = put.put("/v1/notifications", json=unknown, headers={"ApiKey": key})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["path"] == "event"
        no_id = {k: v for k, v in DEACTIVATED.items() if k != "id"}
        assert put.put("/v1/notifications", json=no_id, headers={"ApiKey": key}).status_code == 422
        assert put.put("/v1/notifications", json=[1], headers={"ApiKey": key}).status_code == 422

        # ... the device counts as deactivated on /metrics, and received counters say so
        assert flagged(intake.url, "device_deactivated") == 1
        samples = scrape(f"{intake.url}/metrics")
        labels = (("event", "device_deactivated"), ("result", "duplicate"))
        assert samples[("etims_notifications_received_total", labels)] >= 1

        # ... the CLI lists it, and acknowledging it clears the flag
        env = {
            "ETIMS_DATABASE_URL": pg_url,
            "ETIMS_SECRET_KEY": secret_key,
            "ETIMS_ACTOR": "ops:dan",
            "PATH": "/usr/bin:/bin",
        }

        def cli(*args: str) -> str:
            done = subprocess.run(
                [ETIMS_RELAY, *args], env=env, capture_output=True, text=True, check=True
            )
            return done.stdout

        listed = json.loads(cli("notifications", "list", "--event", "device_deactivated", "--json"))
        assert [(n["delivery_id"], n["sender"], n["tin"]) for n in listed] == [
            ("evt-0001", "kra-sandbox", TIN)
        ]
        cli("notifications", "ack", str(listed[0]["id"]), "--reason", "device re-activated")
        # (the DB gauges are cached a few seconds per process)
        wait_until(
            lambda: flagged(intake.url, "device_deactivated") == 0, timeout=15, what="flag cleared"
        )
        audit = json.loads(cli("audit", "list", "--json", "--action", "notification_ack"))
        assert [(a["actor"], a["reason"]) for a in audit] == [("ops:dan", "device re-activated")]
    finally:
        intake.stop()
        metrics.uninstall_db_collector()
