"""The intake under races and outages, on real PostgreSQL through a real uvicorn server:
a client gets its jobs, a 4xx, a 409 or a 503 with Retry-After, never a 500."""

# ruff: noqa: F811 - fixtures are imported into the module, then named as parameters

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import update

from producers import builders as b
from tests.conftest import PG_ADMIN_DSN
from tests.integration.producers.intake_fixtures import (  # noqa: F401 - fixtures
    IntakeServer,
    intake,
    intake_factory,
    start_intake,
)
from tests.workload import TIN
from worker.outbox.models import jobs

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


def batch(prefix: str, branch: str = "00") -> str:
    """A new item and a sale depending on it: a till's usual pair."""
    line = b.SaleLine("KE2NTNO0000001", "Soap", Decimal("2"), Decimal("116"))
    item = b.item(
        TIN, branch, f"{prefix}:item", item_cd="KE2NTNO0000001", item_nm="Soap", price=line.prc
    )
    sale = b.sale(
        TIN,
        branch,
        f"{prefix}:sale",
        [line],
        trd_invc_no=f"T-{prefix}",
        at=NOW,
        depends_on=[f"{prefix}:item"],
    )
    records = [item, sale]
    return json.dumps({"jobs": records}, default=_number)


def test_eight_clients_posting_one_new_batch_all_get_the_same_jobs(
    intake: IntakeServer,
) -> None:
    key = intake.key()
    clients = [intake.client(key) for _ in range(8)]
    for round_ in range(4):
        # Given a batch no one has written yet, on a branch of its own
        content = batch(f"race{round_}", branch=f"{round_ + 10:02d}")
        barrier = threading.Barrier(len(clients))

        def send(
            client: httpx.Client, content: str = content, barrier: threading.Barrier = barrier
        ) -> httpx.Response:
            barrier.wait()
            return client.post(
                "/v1/jobs", content=content, headers={"Content-Type": "application/json"}
            )

        # When eight clients post it at the same moment
        with ThreadPoolExecutor(len(clients)) as pool:
            responses = list(pool.map(send, clients))
        # Then every one is told the same two job ids; exactly one created them
        assert [r.status_code for r in responses] == [202] * 8, [r.text for r in responses]
        ids = {tuple(j["id"] for j in r.json()["jobs"]) for r in responses}
        assert len(ids) == 1
        created = [j["created"] for r in responses for j in r.json()["jobs"]]
        assert created.count(True) == 2
    assert intake.job_count() == 8


class TcpProxy:
    """A TCP forwarder to PostgreSQL that a test can take down and bring back on the same
    port: a database outage and its end, without touching the shared server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut every open one (as a crashed server would)."""
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert "retry" in response.json()["errors"][0]["message"]


def test_a_database_outage_is_503_with_retry_after_then_recovers(pg_url: str) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.start()
    server = start_intake(pg_url.replace(":5432/", f":{proxy.port}/"))
    try:
        client = server.client(server.key())
        first = client.post("/v1/jobs", content=batch("up"))
        assert first.status_code == 202, first.text
        job_id = first.json()["jobs"][0]["id"]
        # When the database goes away (pooled connections cut, new ones refused)
        proxy.stop()
        # Then writes, reads and the key check answer 503 + Retry-After, not 500
        _assert_unavailable(client.post("/v1/jobs", content=batch("down")))
        _assert_unavailable(client.get(f"/v1/jobs/{job_id}"))
        _assert_unavailable(client.get("/v1/jobs", params={"idempotency_key": "up:item"}))
        assert client.get("/readyz").status_code == 503
        # And once it is back, the same client is served again, first request onwards
        proxy.start()
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200
        again = client.post("/v1/jobs", content=batch("down"))
        assert again.status_code == 202, again.text
    finally:
        proxy.stop()
        server.stop()


def test_an_intake_started_against_a_stopped_database_answers_503(pg_url: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    server = start_intake(pg_url.replace(":5432/", f":{closed_port}/"))
    try:
        # The API key cannot even be checked: 503, not 401 and not 500
        client = server.client(f"etr_{uuid.uuid4().hex[:12]}_{'k' * 43}")
        _assert_unavailable(client.post("/v1/jobs", content=batch("x")))
        _assert_unavailable(client.get("/v1/jobs/1"))
        _assert_unavailable(client.get("/v1/requests/abc"))
    finally:
        server.server.should_exit = True
        server.thread.join(timeout=10)


def test_terminated_pooled_connections_are_replaced_unseen(
    intake_factory: Callable[..., IntakeServer], pg_url: str
) -> None:
    server = intake_factory()
    client = server.client(server.key())
    first = client.post("/v1/jobs", content=batch("before"))
    assert first.status_code == 202
    job_id = first.json()["jobs"][0]["id"]
    for _ in range(3):
        # When an operator (or a failover) kills every connection the intake holds
        dbname = pg_url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()) t",
                (dbname,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        # Then the next reads and writes succeed: the pool replaces the dead connections
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    after = client.post("/v1/jobs", content=batch("after"))
    assert after.status_code == 202, after.text


@pytest.mark.parametrize("item_list", [{}, "soap", [1], [None], [["x"]]])
def test_an_odd_item_list_is_a_422_at_its_path(intake: IntakeServer, item_list: Any) -> None:
    client = intake.client(intake.key())
    record = json.loads(batch("odd"))["jobs"][1]
    record["payload"]["itemList"] = item_list
    del record["depends_on"]
    response = client.post("/v1/jobs", json={"jobs": [record]})
    assert response.status_code == 422, response.text
    paths = [e["path"] for e in response.json()["errors"]]
    expected = "payload.itemList" if not isinstance(item_list, list) else "payload.itemList.0"
    assert paths == [expected]
    # The connection is still good for the next request (no reset after an error)
    assert client.get("/healthz").status_code == 200
    assert intake.job_count() == 0


@pytest.mark.parametrize("change", [{"set": {"itemList": "soap"}}, {"set": {"itemList.0": 1}}])
def test_an_admin_edit_to_an_odd_item_list_is_a_422_naming_it(
    intake: IntakeServer, change: dict[str, Any]
) -> None:
    admin = intake.client(intake.key(admin=True))
    posted = admin.post("/v1/jobs", content=batch("edit"))
    sale_id = posted.json()["jobs"][1]["id"]
    with intake.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == sale_id).values(state="dead"))
    response = admin.post(f"/v1/admin/jobs/{sale_id}/edit", json={**change, "reason": "typo"})
    assert response.status_code == 422, response.text
    message = response.json()["errors"][0]["message"]
    assert "payload.itemList" in message and "must be" in message, message
    assert admin.get(f"/v1/admin/jobs/{sale_id}").json()["state"] == "dead"
