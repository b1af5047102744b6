"""Real sockets on 127.0.0.1, no mocks: the failures that decide NotSent vs MaybeSent.

The tiny server reads the whole request before misbehaving, so a MaybeSent outcome here is
one where the request really did arrive (the case invariant 2 is about).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from worker.oscu import DeviceCredentials, OscuClient, OutcomeKind

K = OutcomeKind
CMC_KEY = "cmc-SECRET-socket-0123456789"
DEVICE = DeviceCredentials("P051234567A", "00", SecretStr(CMC_KEY))
SHORT = httpx.Timeout(0.3, connect=1.0)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would answer instead of our loopback server."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class TinyServer:
    """Accepts connections; per ``mode``: answer 000, stay silent, or hang up after reading."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.threads = [threading.Thread(target=self._serve, daemon=True)]
        self.threads[0].start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            worker = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(worker)
            worker.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            request = read_request(conn)
            self.requests.append(request)
            if self.mode == "silent":
                self.stop.wait(5)
            elif self.mode == "answer":
                body = json.dumps({"resultCd": "000", "resultMsg": "ok", "data": None}).encode()
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                conn.sendall(head.encode() + body)
            # mode "close": leave the with-block, closing without a word

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.sock.close()


@contextlib.contextmanager
def serving(mode: str) -> Iterator[TinyServer]:
    server = TinyServer(mode)
    try:
        yield server
    finally:
        server.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("write", [True, False])
def test_refused_connection_is_transient_and_not_sent(write: bool) -> None:
    with OscuClient(f"http://127.0.0.1:{free_port()}/etims-api", timeout=SHORT) as client:
        outcome = client.call("saveTrnsSalesOsdc", {"invcNo": 1}, device=DEVICE, write=write)
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.TRANSIENT, False)
    assert (outcome.error, outcome.http_status) == ("ConnectError", None)


def test_silent_server_write_is_unknown() -> None:
    with serving("silent") as server:
        with OscuClient(f"http://127.0.0.1:{server.port}/etims-api", timeout=SHORT) as client:
            outcome = client.save_sale(DEVICE, {"invcNo": 1})
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.UNKNOWN, True)
    assert outcome.error == "ReadTimeout"
    assert 0.25 < outcome.latency_s < 3
    assert len(server.requests) == 1 and b"saveTrnsSalesOsdc" in server.requests[0]


def test_silent_server_lookup_is_transient() -> None:
    with serving("silent") as server:
        with OscuClient(f"http://127.0.0.1:{server.port}/etims-api", timeout=SHORT) as client:
            outcome = client.select_invoice_details(DEVICE, 1)
    assert (outcome.kind, outcome.may_have_reached_kra, outcome.error) == (
        K.TRANSIENT,
        True,
        "ReadTimeout",
    )


def test_server_hangs_up_after_reading_write_is_unknown() -> None:
    with serving("close") as server:
        with OscuClient(f"http://127.0.0.1:{server.port}/etims-api", timeout=SHORT) as client:
            outcome = client.insert_stock_io(DEVICE, {"sarNo": 1})
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.UNKNOWN, True)
    assert outcome.error == "RemoteProtocolError"
    assert len(server.requests) == 1


def test_real_answer_and_no_secret_in_any_log(caplog: pytest.LogCaptureFixture) -> None:
    """Over a real socket httpcore logs at DEBUG too; none of it may carry the cmcKey."""
    caplog.set_level(logging.DEBUG)
    # Other tests may have run a dictConfig that disabled existing loggers; this test is about
    # what httpx/httpcore would log when enabled, so enable them explicitly.
    for name in ("httpx", "httpcore", *logging.root.manager.loggerDict):
        if name.startswith(("httpx", "httpcore")):
            logger = logging.getLogger(name)
            logger.disabled = False
            logger.setLevel(logging.DEBUG)
    with serving("answer") as server:
        with OscuClient(f"http://127.0.0.1:{server.port}/etims-api", timeout=SHORT) as client:
            outcome = client.save_item(DEVICE, {"itemCd": "KE2NTBA0000001"})
    assert outcome.kind is K.ACCEPTED
    assert CMC_KEY.encode() in server.requests[0]  # it was sent, as a header
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    for record in caplog.records:
        assert CMC_KEY not in record.getMessage()
        assert CMC_KEY not in str(vars(record))
