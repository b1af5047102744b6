"""Fixtures of the ops integration tests: real workers that expose ``--metrics-port``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ETIMS_RELAY, RelayEnv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET a /metrics page; {(sample name, sorted labels): value}."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


@dataclass
class MetricsWorkers:
    """``etims-relay worker --metrics-port P`` processes, one port each."""

    relay: RelayEnv
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def start(self, n: int = 1, *, concurrency: int = 4, **env: str) -> list[int]:
        started = []
        for _ in range(n):
            port = free_port()
            index = len(self.procs) + 1
            log = open(self.relay.workdir / f"worker-ops-{index}.log", "wb")
            args = [ETIMS_RELAY, "worker", f"--concurrency={concurrency}", f"--metrics-port={port}"]
            if not self.procs:
                args.append("--beat")
            self.procs.append(
                subprocess.Popen(
                    args,
                    env=self.relay.env(**env),
                    cwd=self.relay.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
            self.ports.append(port)
            started.append(port)
        for port in started:
            self._await(port)
        return started

    def _await(self, port: int, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"worker metrics port {port} never answered:\n{self.logs()[-3000:]}")

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/metrics" for p in self.ports]

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")
            for p in sorted(self.relay.workdir.glob("worker-ops-*.log"))
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def metrics_workers(relay_env: RelayEnv) -> Iterator[MetricsWorkers]:
    pool = MetricsWorkers(relay_env)
    yield pool
    pool.stop_all()
