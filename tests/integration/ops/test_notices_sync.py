"""KRA notices: the sync is incremental (sends the stored lastReqDt) and idempotent (a notice
seen again is stored once); the HTTP API and the CLI read and mark them.

In-process pipeline (SQLite and PostgreSQL) with the simulator in a thread, which serves
``selectNoticeList`` from its catalogue plus what a test publishes on ``/__admin/notices``.
"""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import httpx

from simulator.clock import d14, now
from tests.helpers import ETIMS_RELAY
from tests.integration.pipeline_fixtures import Pipeline
from tests.integration.producers.intake_fixtures import OTHER_TIN, start_intake
from tests.workload import TIN
from worker import metrics
from worker.notices import FIRST_LAST_REQ_DT, sync_device
from worker.outbox import ops_queries as oq


def publish(pipeline: Pipeline, *notices: dict[str, object]) -> None:
    response = httpx.post(f"{pipeline.sim.url}/__admin/notices", json=list(notices), timeout=10)
    response.raise_for_status()


def sync(pipeline: Pipeline) -> tuple[int, int, str]:
    rt = pipeline.runtime
    result = sync_device(rt.engine, rt.client, rt.devices, TIN, "00")
    assert result.outcome in ("accepted", "empty"), result
    return result.fetched, result.stored, result.last_req_dt


def stored_numbers(pipeline: Pipeline) -> list[str]:
    with pipeline.runtime.engine.connect() as conn:
        return sorted(r.notice_no for r in oq.list_notices(conn, tin=TIN, bhf_id="00"))


def test_notice_sync_is_incremental_and_idempotent(pipeline: Pipeline) -> None:
    # Given KRA holds its standing notice plus one published last year
    publish(pipeline, {"noticeNo": 41, "title": "Old", "cont": "x", "regDt": "20250101080000"})

    # When the device syncs for the first time, it gets both and remembers KRA's resultDt
    fetched, stored, last = sync(pipeline)
    assert (fetched, stored) == (2, 2)
    assert last > "20250101080000"
    assert stored_numbers(pipeline) == ["1", "41"]

    # ... a second sync asks since that resultDt: nothing new, nothing stored
    assert sync(pipeline)[:2] == (0, 0)

    # ... a notice published after it is the only one the next sync fetches
    later = d14(now() + timedelta(minutes=1))
    publish(pipeline, {"noticeNo": 42, "title": "New", "cont": "y", "regDt": later})
    fetched, stored, _ = sync(pipeline)
    assert (fetched, stored) == (1, 1)

    # Then even a full re-sync (lastReqDt lost) stores no notice twice
    with pipeline.runtime.engine.begin() as conn:
        oq.save_notice_sync(conn, TIN, "00", FIRST_LAST_REQ_DT, 0.0)
    fetched, stored, _ = sync(pipeline)
    assert (fetched, stored) == (3, 0)
    assert stored_numbers(pipeline) == ["1", "41", "42"]


def test_notices_over_http_and_cli(pipeline: Pipeline) -> None:
    # Given three synced notices
    publish(
        pipeline,
        {"noticeNo": 7, "title": "Seven", "cont": "c7", "regDt": "20250101080000"},
        {"noticeNo": 8, "title": "Eight", "cont": "c8", "regDt": "20250102080000"},
    )
    sync(pipeline)
    intake = start_intake(pipeline.runtime.settings.database_url)
    try:
        mine = intake.client(intake.key(TIN))
        other = intake.client(intake.key(OTHER_TIN))

        # When the taxpayer's key lists them, they are all unread
        listed = mine.get("/v1/notices", params={"tin": TIN, "is_read": False}).json()
        assert sorted(n["notice_no"] for n in listed) == ["1", "7", "8"]
        assert mine.get("/v1/notices/unread/count", params={"tin": TIN}).json() == {"count": 3}
        seven = next(n for n in listed if n["notice_no"] == "7")
        assert mine.get(f"/v1/notices/{seven['id']}").json()["content"] == "c7"

        # ... reading one marks it (twice is harmless), and the counts follow
        read = mine.post(f"/v1/notices/{seven['id']}/read").json()
        assert read["is_read"] and read["read_by"].startswith("api:")
        assert mine.post(f"/v1/notices/{seven['id']}/read").status_code == 200
        assert mine.get("/v1/notices/unread/count", params={"tin": TIN}).json() == {"count": 2}
        read_list = mine.get("/v1/notices", params={"is_read": True}).json()
        assert [n["notice_no"] for n in read_list] == ["7"]

        # ... another taxpayer's key sees none of them
        assert other.get("/v1/notices", params={"tin": TIN}).status_code == 403
        assert other.get("/v1/notices").json() == []
        assert other.get(f"/v1/notices/{seven['id']}").status_code == 404
        assert mine.get("/v1/notices/999999").status_code == 404

        # ... and the unread gauge on /metrics says 2
        scraped = httpx.get(f"{intake.url}/metrics", timeout=10).text
        assert "etims_notices_unread 2.0" in scraped
    finally:
        intake.stop()
        metrics.uninstall_db_collector()

    # Then the CLI lists them and reads one
    env = {
        "ETIMS_DATABASE_URL": pipeline.runtime.settings.database_url,
        "ETIMS_SECRET_KEY": pipeline.runtime.settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
        "ETIMS_ACTOR": "ops:carol",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [ETIMS_RELAY, "notices", "list", "--unread", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    unread = json.loads(out.stdout)
    assert sorted(n["notice_no"] for n in unread) == ["1", "8"]
    eight = next(n for n in unread if n["notice_no"] == "8")
    shown = subprocess.run(
        [ETIMS_RELAY, "notices", "read", str(eight["id"])],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "Eight" in shown.stdout and "c8" in shown.stdout and "ops:carol" in shown.stdout
