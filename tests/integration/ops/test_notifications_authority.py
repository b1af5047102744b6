"""PUT /v1/notifications in the authority's documented format (``Authorization: ApiKey``,
``{"Id": serial, "Type", "Message"}``, ``Accept-Language``) and its ping, on SQLite and
PostgreSQL through a real intake; the device is found by its serial."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.pipeline_fixtures import Pipeline
from tests.integration.producers.intake_fixtures import IntakeServer, start_intake
from tests.workload import TIN
from worker.notifications import register
from worker.outbox.ops_models import notifications

DEACTIVATED = {
    "Id": "SER-00",
    "Type": "PosDeactivated",
    "Message": {"DeactivationDate": "2026-11-22T08:00:00Z", "Reason": "closed branch"},
}


@pytest.fixture
def intake(pipeline: Pipeline) -> Iterator[IntakeServer]:
    """An intake over a database that knows device SER-00 (TIN/00)."""
    server = start_intake(pipeline.runtime.settings.database_url)
    yield server
    server.stop()


def push(
    intake: IntakeServer, key: str, body: Any, *, language: str | None = "en", bare: bool = False
) -> Any:
    headers = {"ApiKey": key} if bare else {"Authorization": f"ApiKey {key}"}
    if language:
        headers["Accept-Language"] = language
    return intake.client().put("/v1/notifications", json=body, headers=headers)


def stored(intake: IntakeServer) -> list[Any]:
    with intake.engine.connect() as conn:
        return list(conn.execute(select(notifications).order_by(notifications.c.id)))


def test_the_same_event_twice_is_stored_once(intake: IntakeServer) -> None:
    key = register(intake.engine, "authority")
    # When the authority delivers the same event twice (network retry)
    first = push(intake, key, DEACTIVATED, language="ar")
    again = push(intake, key, DEACTIVATED, language="ar")
    # Then both are 200, the second a duplicate of the first
    assert (first.status_code, first.json()["result"]) == (200, "stored")
    assert (again.status_code, again.json()["result"]) == (200, "duplicate")
    assert again.json()["id"] == first.json()["id"]
    [row] = stored(intake)
    # ... stored under our event name, for the device's branch, with the language
    assert (row.event, row.serial, row.tin, row.bhf_id) == (
        "device_deactivated",
        "SER-00",
        TIN,
        "00",
    )
    assert row.language == "ar"
    assert json.loads(row.message) == DEACTIVATED["Message"]
    assert json.loads(row.body) == DEACTIVATED
    # A later event of the same device and type with other content is a new event
    later = {**DEACTIVATED, "Message": {**DEACTIVATED["Message"], "Reason": "fraud"}}
    assert push(intake, key, later).json()["result"] == "stored"
    assert len(stored(intake)) == 2


@pytest.mark.parametrize(
    ("kind", "message", "event"),
    [
        ("PosCredentialExpiration", {"ExpirationDate": "2026-12-01"}, "credentials_expiring"),
        ("PosDatesExpiration", {"ExpirationDate": "2027-01-01"}, "device_dates_expiring"),
        ("PosDeactivated", {}, "device_deactivated"),
        ("PosDeviceUnused", {"LastUsedDate": "2026-10-01", "UnusedDays": 60}, "device_unused"),
        ("IssueReceived", {"IssueId": "ISS-9", "Description": "printer"}, "issue_received"),
    ],
)
def test_every_documented_type_is_accepted(
    intake: IntakeServer, kind: str, message: dict[str, Any], event: str
) -> None:
    key = register(intake.engine, "authority")
    body = {"Id": "SER-00", "Type": kind, "Message": {**message, "Unlisted": "kept"}}
    answer = push(intake, key, body, bare=True)  # the bare ApiKey header still works
    assert answer.status_code == 200 and answer.json()["event"] == event
    [row] = stored(intake)
    assert json.loads(row.body)["Message"]["Unlisted"] == "kept"


def test_malformed_events_and_bad_keys_are_refused(intake: IntakeServer) -> None:
    key = register(intake.engine, "authority")
    unknown = push(intake, key, {**DEACTIVATED, "Type": "PosExploded"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["path"] == "Type"
    assert "PosDeactivated" in unknown.json()["errors"][0]["message"]
    not_object = push(intake, key, {**DEACTIVATED, "Message": "text"})
    assert not_object.status_code == 422
    assert not_object.json()["errors"][0]["path"] == "Message"
    assert push(intake, key, {"Type": "PosDeactivated", "Message": {}}).status_code == 422
    wrong_type = {"Id": "SER-00", "Type": "PosDeviceUnused", "Message": {"UnusedDays": "many"}}
    assert push(intake, key, wrong_type).status_code == 422
    assert push(intake, "etn_nope", DEACTIVATED).status_code == 401
    bearer = intake.client().put(
        "/v1/notifications", json=DEACTIVATED, headers={"Authorization": f"Bearer {key}"}
    )
    assert bearer.status_code == 401
    assert stored(intake) == []
    # An unknown device is stored without a branch (and a language we do not know as none)
    stranger = {**DEACTIVATED, "Id": "SER-XX"}
    assert push(intake, key, stranger, language="fr").status_code == 200
    [row] = stored(intake)
    assert (row.tin, row.bhf_id, row.language) == (None, None, None)


def test_ping_echoes_the_registration_number(intake: IntakeServer) -> None:
    key = register(intake.engine, "authority")
    client = intake.client()
    pinged = client.put(
        "/v1/ping", json={"rin": "943832043"}, headers={"Authorization": f"ApiKey {key}"}
    )
    assert (pinged.status_code, pinged.json()) == (200, {"rin": "943832043"})
    assert client.put("/v1/ping", json={"rin": "943832043"}).status_code == 401
    bad = client.put("/v1/ping", json={}, headers={"Authorization": f"ApiKey {key}"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "rin"
