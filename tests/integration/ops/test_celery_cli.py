"""Celery as its users know it: ``celery -A worker.celery_app`` loads the app, runs the same
worker as ``etims-relay worker`` (threads pool, metrics, our log format), sends task events
when ``ETIMS_CELERY__EVENTS=true``, and finds workers by their stable node names.

Real processes against real Redis, PostgreSQL and the simulator.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ETIMS_RELAY, RelayEnv, all_terminal, wait_until
from tests.integration.ops.conftest import free_port, scrape, total
from tests.integration.test_pipeline_workers import init_devices
from tests.workload import branch_workload

pytestmark = pytest.mark.slow

CELERY = str(Path(sys.executable).with_name("celery"))


class Procs:
    """Child processes of one test, each in its own session; all stopped at the end."""

    def __init__(self, relay: RelayEnv) -> None:
        self.relay = relay
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        """Run ``argv``; stdout goes to ``<name>.out``, stderr (the logs) to ``<name>.log``."""
        out = open(self.relay.workdir / f"{name}.out", "wb")
        log = open(self.relay.workdir / f"{name}.log", "wb")
        proc = subprocess.Popen(
            argv,
            env=self.relay.env(**env),
            cwd=self.relay.workdir,
            stdout=out,
            stderr=log,
            start_new_session=True,
        )
        out.close()
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str, suffix: str = "log") -> str:
        return (self.relay.workdir / f"{name}.{suffix}").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def procs(relay_env: RelayEnv) -> Iterator[Procs]:
    started = Procs(relay_env)
    yield started
    started.stop_all()


def test_celery_cli_worker_drains_with_metrics_json_logs_and_task_events(
    relay_env: RelayEnv, procs: Procs
) -> None:
    # Given devices, an event listener and a worker started the way Celery users start one
    init_devices(relay_env, ["00"])
    procs.start("events", [CELERY, "-A", "worker.celery_app", "events", "--dump"])
    port = free_port()
    worker = procs.start(
        "celery-worker",
        [CELERY, "-A", "worker.celery_app", "worker", "-n", "etims-cli@%h", "--beat"],
        ETIMS_METRICS__PORT=str(port),
        ETIMS_CELERY__EVENTS="true",
        ETIMS_LOG_FORMAT="json",
        ETIMS_LOG_LEVEL="INFO",
    )
    wait_until(
        lambda: _answers(port) or worker.poll() is not None,
        timeout=90,
        what="metrics port of the celery CLI worker",
    )
    assert worker.poll() is None, procs.log("celery-worker")

    # When jobs are enqueued
    records = branch_workload("00", 4)
    relay_env.enqueue(records)

    # Then the celery CLI worker drains them to KRA, like `etims-relay worker` does
    wait_until(lambda: all_terminal(relay_env.status()), timeout=90, what="jobs drained")
    assert relay_env.status()["jobs"]["accepted"] == len(records)
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    assert total(samples, "etims_job_outcomes_total", outcome="accepted") == len(records)
    assert total(samples, "process_cpu_seconds_total") > 0
    # ...as node etims-cli@<host> on the threads pool with 8 slots and task events on
    banner = procs.log("celery-worker", "out")
    assert f"etims-cli@{socket.gethostname()}" in banner
    assert "concurrency: 8 (thread)" in banner
    assert "task events: ON" in banner
    # ...logging through our JSON formatter, Celery's own lines and ours alike
    records = [
        json.loads(line) for line in procs.log("celery-worker").splitlines() if line[:1] == "{"
    ]
    loggers = {r["logger"] for r in records}
    assert "celery.app.trace" in loggers and "etims_relay.calls" in loggers, loggers
    # ...and sends task events that Celery's event tools see
    wait_until(
        lambda: "task succeeded" in procs.log("events", "out"),
        timeout=30,
        what="task-succeeded events",
    )
    assert "etims_relay.drain" in procs.log("events", "out")


def test_workers_have_stable_node_names_celery_inspect_finds(
    relay_env: RelayEnv, procs: Procs
) -> None:
    # Given an `etims-relay worker --name-suffix w1` with a metrics port
    port = free_port()
    argv = [ETIMS_RELAY, "worker", "-c", "2", "--name-suffix", "w1", "--metrics-port", str(port)]
    worker = procs.start("worker-w1", argv)
    wait_until(lambda: _answers(port) or worker.poll() is not None, timeout=90, what="worker")
    assert worker.poll() is None, procs.log("worker-w1")
    node = f"etims-w1@{socket.gethostname()}"

    # When Celery's own tooling addresses it by name
    def ping() -> str:
        done = subprocess.run(
            [CELERY, "-A", "worker.celery_app", "inspect", "ping", "-d", node, "--json"],
            env=relay_env.env(),
            cwd=relay_env.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout if done.returncode == 0 else ""

    # Then it answers under that name, and its metrics include the process collectors
    answer = wait_until(ping, timeout=60, what=f"pong from {node}")
    assert node in json.loads(answer.strip().splitlines()[-1])
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    assert total(samples, "process_resident_memory_bytes") > 0
    assert total(samples, "process_open_fds") > 0


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
