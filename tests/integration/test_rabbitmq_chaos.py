"""The pipeline's chaos scenario with RabbitMQ as the broker instead of Redis.

Same story as tests/integration/test_chaos.py (same workload, same 10% KRA faults, workers
SIGKILLed three times) with RabbitMQ's versions of "the broker lost its messages": the
``etims`` queue is purged and every client connection is closed by the broker mid-run.
Invariants: nothing lost, nothing signed twice, order per branch (README, invariants 1-3).

RabbitMQ runs on 127.0.0.1:5672 with guest/guest (scripts/ensure-services.sh starts it).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

from simulator.process import SimulatorProcess
from tests.helpers import RelayEnv, WorkerPool
from tests.integration.test_chaos import FAULTS, assert_chaos_invariants
from tests.integration.test_pipeline_workers import init_devices
from tests.workload import branch_ids, workload
from worker.wake import QUEUE

pytestmark = pytest.mark.slow

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def purge_queue(url: str = AMQP_URL) -> int:
    """Drop every message waiting in the drain queue (RabbitMQ's FLUSHALL for our purposes)."""
    with Connection(url, connect_timeout=5) as conn:
        channel = conn.default_channel
        try:
            return int(channel.queue_purge(QUEUE) or 0)
        except conn.channel_errors:  # the queue does not exist yet: nothing to purge
            return 0


def close_all_connections() -> None:
    """The broker drops every client connection, as on a RabbitMQ restart or failover."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    assert rabbitmqctl, "rabbitmqctl missing: run scripts/ensure-services.sh"
    subprocess.run(
        [rabbitmqctl, "close_all_connections", "etims-relay chaos test"],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """The real RabbitMQ, with the drain queue empty before and after the test."""
    purge_queue()
    yield AMQP_URL
    purge_queue()


@pytest.fixture
def rabbit_env(
    tmp_path: Path, pg_url: str, amqp_url: str, simulator: SimulatorProcess, secret_key: str
) -> RelayEnv:
    return RelayEnv.make(tmp_path, pg_url, amqp_url, simulator.url, secret_key)


@pytest.fixture
def rabbit_workers(rabbit_env: RelayEnv) -> Iterator[WorkerPool]:
    pool = WorkerPool(rabbit_env)
    yield pool
    pool.stop_all()


def test_rabbitmq_chaos_every_job_accepted_once_in_order(
    rabbit_env: RelayEnv, rabbit_workers: WorkerPool, simulator: SimulatorProcess
) -> None:
    rng = random.Random(11)
    branches = branch_ids(8)
    init_devices(rabbit_env, branches)
    for fault in FAULTS:
        simulator.add_fault(endpoint="*", **fault)
    records = workload(8, 200)

    # Given four workers on RabbitMQ, with jobs flowing
    rabbit_workers.start(4, concurrency=4)
    rabbit_env.enqueue(records)

    # When workers are SIGKILLed three times, the queue is purged and every connection dropped
    for round_ in range(3):
        time.sleep(2.0)
        victim = rng.choice(rabbit_workers.alive())
        rabbit_workers.kill(victim)
        rabbit_workers.start(1, concurrency=4, beat_on_first=True)
        if round_ == 1:
            purge_queue()
            close_all_connections()

    # Then every job ends accepted, once, in order, under the number KRA signed it with
    outcomes = assert_chaos_invariants(rabbit_env, simulator, len(records))
    assert outcomes["unknown"] > 0 and outcomes["transient"] > 0, outcomes

    # ... and the workers really ran on RabbitMQ (not an embedded or Redis broker)
    logs = rabbit_workers.logs()
    assert "amqp://guest:**@127.0.0.1:5672//" in logs, logs[-2000:]
