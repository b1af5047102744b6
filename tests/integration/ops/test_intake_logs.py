"""The intake's logs are one format: with ETIMS_LOG_FORMAT=json every line it writes, uvicorn's
startup, access and shutdown lines included, is a JSON object."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import httpx

from tests.helpers import ETIMS_RELAY, RelayEnv, wait_until
from tests.integration.ops.conftest import free_port


def test_every_intake_log_line_is_json_uvicorn_lines_included(relay_env: RelayEnv) -> None:
    # Given the intake started with JSON logs
    port = free_port()
    log = relay_env.workdir / "intake.err"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [ETIMS_RELAY, "intake", "--port", str(port)],
            env=relay_env.env(ETIMS_LOG_FORMAT="json", ETIMS_LOG_LEVEL="INFO"),
            cwd=relay_env.workdir,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), timeout=90, what="intake /healthz")
        # When it serves requests, a good one and a bad one
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{url}/no-such-page", timeout=10).status_code == 404
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    # Then every stderr line parses as JSON, uvicorn's own lines among them
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    by_logger: dict[str, list[str]] = {}
    for record in records:
        by_logger.setdefault(record["logger"], []).append(record["message"])
        assert "color_message" not in record
    assert any("Uvicorn running on" in m for m in by_logger.get("uvicorn.error", [])), by_logger
    access = by_logger.get("uvicorn.access", [])
    assert any("GET /healthz" in m and "200" in m for m in access), access
    assert any("GET /no-such-page" in m and "404" in m for m in access), access


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
