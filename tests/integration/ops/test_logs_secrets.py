"""A full run's logs and CLI output never contain a secret it used; its logs are structured.

Real processes: the intake (``etims-relay intake``), two workers (JSON logs), beat, the CLI,
the simulator as KRA (with lost answers and 990s, so retries and unknowns are logged too).
Secrets: every cmcKey KRA issued (read from the simulator's ledger, which is KRA's own store
and not a log), the Fernet key, an intake API key and a notification sender's ApiKey. The only
output allowed to show a key is the command that creates it, once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator.process import SimulatorProcess
from tests.helpers import ETIMS_RELAY, RelayEnv, WorkerPool, wait_until
from tests.integration.ops.conftest import free_port
from tests.integration.ops.test_metrics_scrape import ghost_sale
from tests.integration.test_pipeline_workers import init_devices
from tests.workload import TIN, branch_workload

pytestmark = pytest.mark.slow

ACTIVE = {"pending", "in_flight", "retry_wait", "unknown"}
CALL_FIELDS = {"job_id", "idempotency_key", "branch", "kind", "outcome", "result_code",
               "latency_ms", "attempt"}  # fmt: skip


def issued_cmc_keys(ledger: Path) -> set[str]:
    """Every cmcKey value KRA's ledger holds (at any depth of its records)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "cmcKey" and isinstance(item, str):
                    found.add(item)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for line in ledger.read_text().splitlines():
        walk(json.loads(line))
    return found


@pytest.fixture
def intake_process(relay_env: RelayEnv) -> Iterator[str]:
    port = free_port()
    log = open(relay_env.workdir / "intake.log", "wb")
    proc = subprocess.Popen(
        [ETIMS_RELAY, "intake", "--port", str(port)],
        env=relay_env.env(),
        cwd=relay_env.workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(url), timeout=60, what="intake /healthz")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=15)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_no_secret_reaches_a_log_or_the_cli_and_logs_are_structured(
    relay_env: RelayEnv,
    workers: WorkerPool,
    simulator: SimulatorProcess,
    intake_process: str,
    secret_key: str,
) -> None:
    relay_env.extra["ETIMS_LOG_FORMAT"] = "json"
    outputs: list[str] = []

    def cli(*args: str, input: str | None = None, check: bool = True) -> str:
        done = relay_env.cli(*args, input=input, check=check)
        outputs.append(done.stdout + done.stderr)
        return done.stdout

    # Given devices, an intake API key and a notification sender (each key shown once)
    init_devices(relay_env, ["00", "01"])
    api_key = relay_env.cli("apikey", "create", "--tin", TIN, "--admin").stdout.split()[-1]
    sender_key = relay_env.cli("notifications", "register", "kra").stdout.split()[-1]
    assert api_key.startswith("etr_") and sender_key.startswith("etn_")
    for fault in (
        {"kind": "lost_answer", "times": 3},
        {"kind": "result_code", "code": "990", "times": 3},
    ):
        simulator.add_fault(endpoint="*", **fault)
    workers.start(2, concurrency=4)

    # When work arrives over HTTP and the CLI, an authority pushes an event, ops use the CLI
    http = httpx.Client(base_url=intake_process, timeout=30)
    posted = http.post(
        "/v1/jobs",
        content=json.dumps({"jobs": branch_workload("01", 12)}, default=str),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    assert posted.status_code in (200, 201, 202), posted.text
    event = {"id": "e1", "event": "credentials_expiring", "tin": TIN, "bhf_id": "00"}
    assert http.put("/v1/notifications", json=event, headers={"ApiKey": sender_key}).is_success
    assert http.get("/metrics").is_success
    records = branch_workload("00", 15) + ghost_sale("00", "00:ghost")
    cli("enqueue", "-", input="\n".join(json.dumps(r, default=str) for r in records) + "\n")
    wait_until(
        lambda: not ACTIVE & {j["state"] for j in _jobs(relay_env)}, timeout=120, what="settled"
    )
    dead = json.loads(cli("dead", "list", "--json"))
    assert dead
    cli("dead", "show", str(dead[0]["id"]))
    cli("replay", str(dead[0]["id"]), "--reason", "again")
    for args in (
        ("status",),
        ("status", "--json"),
        ("notices", "sync"),
        ("notices", "list"),
        ("notifications", "list"),
        ("audit", "list"),
        ("apikey", "list"),
    ):
        cli(*args)
    time.sleep(1.0)
    http.close()
    workers.stop_all()

    # Then no log and no CLI output holds any secret
    cmc_keys = issued_cmc_keys(simulator.ledger)
    assert len(cmc_keys) == 2
    secrets = {*cmc_keys, secret_key, api_key, sender_key}
    texts = {
        path.name: path.read_text(errors="replace") for path in relay_env.workdir.glob("*.log")
    }
    texts["simulator.log"] = simulator.log_path.read_text(errors="replace")
    texts |= {f"cli-{i}": text for i, text in enumerate(outputs)}
    assert {"intake.log", "worker-1.log", "worker-2.log"} <= set(texts)
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {name}"
            assert secret[:16] not in text, f"part of a secret leaked into {name}"

    # ... and the worker logs hold one JSON line per OSCU call and per job state change
    lines = [
        json.loads(line)
        for name in ("worker-1.log", "worker-2.log")
        for line in texts[name].splitlines()
        if line.startswith("{")
    ]
    calls = [e for e in lines if e.get("event") == "oscu_call"]
    changes = [e for e in lines if e.get("event") == "job_state"]
    assert calls and changes
    assert all(CALL_FIELDS <= set(e) for e in calls + changes)
    assert {e["outcome"] for e in calls} >= {"accepted", "rejected", "rate_limited"}
    assert len(calls) == len(changes)
    refused = [e for e in changes if e["state"] == "dead"]
    assert refused and refused[0]["result_code"] == "910" and refused[0]["level"] == "WARNING"
    assert all("payload" not in e and "body" not in e for e in lines)


def _jobs(relay: RelayEnv) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from worker.outbox.db import make_engine
    from worker.outbox.models import jobs

    engine = make_engine(relay.database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(jobs.c.idempotency_key, jobs.c.state)).all()
    engine.dispose()
    return [{"key": k, "state": s} for k, s in rows]
