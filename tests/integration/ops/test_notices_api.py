"""``/api/v1/notices``: the notices API shape (pages with meta, one notice with raw_data, read,
unread count, sync) over a real intake, on SQLite and PostgreSQL, with the simulator serving
``selectNoticeList`` and the Bearer key scoping of the intake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.pipeline_fixtures import Pipeline
from tests.integration.producers.intake_fixtures import OTHER_TIN, IntakeServer, start_intake
from tests.workload import TIN
from worker.notices import sync_device

#: published on top of the simulator's standing notice (noticeNo 1)
PUBLISHED = [
    {"noticeNo": 10 + n, "title": f"T{n}", "cont": f"c{n}", "regDt": f"2025010{n}080000"}
    for n in range(1, 5)
]


@pytest.fixture
def notices(pipeline_factory: Any) -> Iterator[tuple[Pipeline, IntakeServer]]:
    """Devices on branches 00 and 01, KRA holding five notices, an intake that can sync."""
    pipeline: Pipeline = pipeline_factory(branches=("00", "01"))
    httpx.post(f"{pipeline.sim.url}/__admin/notices", json=PUBLISHED, timeout=10).raise_for_status()
    rt = pipeline.runtime
    intake = start_intake(
        rt.settings.database_url,
        notice_sync=lambda tin, bhf, since: sync_device(
            rt.engine, rt.client, rt.devices, tin, bhf, since=since
        ),
    )
    yield pipeline, intake
    intake.stop()


def test_sync_then_pages_with_meta(notices: tuple[Pipeline, IntakeServer]) -> None:
    _, intake = notices
    client = intake.client(intake.key(TIN))

    # When the ERP asks for a sync of branch 00, every notice KRA holds is stored once
    synced = client.post("/api/v1/notices/sync", json={"bhf_id": "00"})
    assert synced.status_code == 200
    assert synced.json() == {"status": "success", "data": {"synced": 5}}
    assert client.post("/api/v1/notices/sync", json={"bhf_id": "00"}).json()["data"] == {
        "synced": 0
    }
    # ... and a sync from an earlier lastReqDt fetches again but stores nothing twice
    again = client.post(
        "/api/v1/notices/sync", json={"bhf_id": "00", "last_req_dt": "20000101000000"}
    )
    assert again.json()["data"] == {"synced": 0}

    # Then the list pages newest first with the meta a client pages by
    first = client.get("/api/v1/notices", params={"per_page": 2, "bhf_id": "00"}).json()
    assert first["status"] == "success"
    meta = first["meta"]
    assert {k: meta[k] for k in ("current_page", "per_page", "total", "last_page")} == {
        "current_page": 1,
        "per_page": 2,
        "total": 5,
        "last_page": 3,
    }
    assert meta["timestamp"].endswith("+00:00")
    assert [n["notice_no"] for n in first["data"]] == ["14", "13"]
    third = client.get("/api/v1/notices", params={"per_page": 2, "page": 3}).json()
    assert [n["notice_no"] for n in third["data"]] == ["1"]
    assert third["meta"]["current_page"] == 3
    default = client.get("/api/v1/notices").json()
    assert default["meta"]["per_page"] == 20 and len(default["data"]) == 5
    assert client.get("/api/v1/notices", params={"per_page": 101}).status_code == 422
    assert client.get("/api/v1/notices", params={"page": 0}).status_code == 422


def test_one_notice_read_and_unread_count(notices: tuple[Pipeline, IntakeServer]) -> None:
    _, intake = notices
    client = intake.client(intake.key(TIN))
    client.post("/api/v1/notices/sync", json={"bhf_id": "00"})
    unread = client.get("/api/v1/notices/unread/count", params={"bhf_id": "00"})
    assert unread.json() == {"status": "success", "data": {"unread_count": 5}}

    listed = client.get("/api/v1/notices", params={"is_read": False}).json()["data"]
    twelve = next(n for n in listed if n["notice_no"] == "12")
    assert "raw_data" not in twelve
    one = client.get(f"/api/v1/notices/{twelve['id']}").json()
    assert one["status"] == "success"
    assert one["data"]["content"] == "c2"
    assert one["data"]["raw_data"]["noticeNo"] == 12 and one["data"]["raw_data"]["cont"] == "c2"

    # When it is marked read (twice is harmless), the count and the filters follow
    read = client.post(f"/api/v1/notices/{twelve['id']}/read").json()
    assert read["status"] == "success" and read["data"]["is_read"] is True
    assert read["data"]["read_by"].startswith("api:")
    assert client.post(f"/api/v1/notices/{twelve['id']}/read").status_code == 200
    count = client.get("/api/v1/notices/unread/count").json()["data"]["unread_count"]
    assert count == 4
    read_only = client.get("/api/v1/notices", params={"is_read": True}).json()
    assert [n["notice_no"] for n in read_only["data"]] == ["12"]
    assert read_only["meta"]["total"] == 1
    assert client.get("/api/v1/notices/999999").status_code == 404
    # The older route is an alias over the same rows
    assert client.get(f"/v1/notices/{twelve['id']}").json()["is_read"] is True


def test_keys_see_only_their_scope(notices: tuple[Pipeline, IntakeServer]) -> None:
    _, intake = notices
    mine = intake.client(intake.key(TIN))
    mine.post("/api/v1/notices/sync", json={"bhf_id": "00"})
    notice_id = mine.get("/api/v1/notices").json()["data"][0]["id"]

    # Another taxpayer's key sees nothing, and names of our tin or notices get 403/404
    other = intake.client(intake.key(OTHER_TIN))
    page = other.get("/api/v1/notices").json()
    assert page["data"] == [] and page["meta"]["total"] == 0 and page["meta"]["last_page"] == 1
    assert other.get("/api/v1/notices", params={"tin": TIN}).status_code == 403
    assert other.get(f"/api/v1/notices/{notice_id}").status_code == 404
    assert other.post(f"/api/v1/notices/{notice_id}/read").status_code == 404
    assert other.get("/api/v1/notices/unread/count").json()["data"]["unread_count"] == 0
    refused = other.post("/api/v1/notices/sync", json={"bhf_id": "00", "tin": TIN})
    assert refused.status_code == 403
    assert mine.get(f"/api/v1/notices/{notice_id}").json()["data"]["is_read"] is False

    # A key for branch 01 only: branch 00 is refused, its own list holds only 01's notices
    branch01 = intake.client(intake.key(TIN, branches=("01",)))
    assert branch01.get("/api/v1/notices", params={"bhf_id": "00"}).status_code == 403
    assert branch01.get("/api/v1/notices").json()["meta"]["total"] == 0
    assert branch01.post("/api/v1/notices/sync", json={"bhf_id": "00"}).status_code == 403
    assert branch01.post("/api/v1/notices/sync", json={"bhf_id": "01"}).json()["data"] == {
        "synced": 5
    }
    assert branch01.get("/api/v1/notices").json()["meta"]["total"] == 5

    # An admin key sees every tin, or one
    admin = intake.client(intake.key(OTHER_TIN, admin=True))
    assert admin.get("/api/v1/notices").json()["meta"]["total"] == 10
    assert admin.get("/api/v1/notices", params={"tin": OTHER_TIN}).json()["meta"]["total"] == 0

    # Without a key: 401
    assert intake.client().get("/api/v1/notices").status_code == 401


def test_sync_without_a_device_or_an_oscu_client(notices: tuple[Pipeline, IntakeServer]) -> None:
    pipeline, intake = notices
    client = intake.client(intake.key(TIN))
    assert client.post("/api/v1/notices/sync", json={"bhf_id": "07"}).status_code == 404
    assert client.post("/api/v1/notices/sync", json={"bhf_id": "0"}).status_code == 422
    plain = start_intake(pipeline.runtime.settings.database_url)  # no OSCU client wired in
    try:
        answer = plain.client(plain.key(TIN)).post("/api/v1/notices/sync", json={"bhf_id": "00"})
        assert answer.status_code == 503
    finally:
        plain.stop()
