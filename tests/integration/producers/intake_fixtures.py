"""A real intake server (uvicorn in a thread, real sockets) over a real test database.

Not a TestClient: requests go through HTTP parsing, the body-size middleware and the
threadpool exactly as in production. Import the fixtures you use into the test module.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, func, select

from producers.apikeys import create_api_key
from producers.enqueue import EnqueueOptions
from producers.intake import IntakeContext, create_app
from producers.intake.deps import NoticeSync
from producers.intake.ratelimit import KeyRateLimiter
from tests.workload import TIN
from worker.outbox.db import make_engine
from worker.outbox.models import jobs
from worker.wake import NullWaker

OTHER_TIN = "P000000001Z"


@dataclass
class IntakeServer:
    url: str
    engine: Engine
    server: uvicorn.Server
    thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)

    def key(self, tin: str = TIN, branches: tuple[str, ...] = (), admin: bool = False) -> str:
        return create_api_key(self.engine, tin, branches=branches, admin=admin)[1]

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def job_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.engine.dispose()


def start_intake(
    database_url: str,
    *,
    rate_limit: str = "100000/minute",
    max_body_bytes: int = 2_000_000,
    broker_url: str = "",
    ready_timeout_s: float = 2.0,
    options: EnqueueOptions | None = None,
    notice_sync: NoticeSync | None = None,
) -> IntakeServer:
    engine = make_engine(database_url, pre_ping=True)
    context = IntakeContext(
        engine=engine,
        waker=NullWaker(),
        options=options or EnqueueOptions(),
        limiter=KeyRateLimiter(rate_limit),
        broker_url=broker_url,
        ready_timeout_s=ready_timeout_s,
        notice_sync=notice_sync,
    )
    app = create_app(context, max_body_bytes=max_body_bytes)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ws="none", http="h11", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert time.time() < deadline, "intake did not start"
        time.sleep(0.02)
    return IntakeServer(f"http://127.0.0.1:{port}", engine, server, thread)


@pytest.fixture
def intake_factory(pg_url: str) -> Iterator[Callable[..., IntakeServer]]:
    """Start intake servers over this test's PostgreSQL database (stopped after the test)."""
    started: list[IntakeServer] = []

    def start(**options: Any) -> IntakeServer:
        server = start_intake(pg_url, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def intake(intake_factory: Callable[..., IntakeServer]) -> IntakeServer:
    return intake_factory()
