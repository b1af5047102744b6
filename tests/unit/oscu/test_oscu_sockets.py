"""Real sockets on 127.0.0.1, no mocks: the failures that decide NotSent vs MaybeSent.

The tiny server reads the whole request before misbehaving, so a MaybeSent outcome here is
one where the request really did arrive (the case invariant 2 is about).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator

import httpx
import pytest
import trustme
from pydantic import SecretStr

from tests.helpers import wait_until
from worker.oscu import DEFAULT_LIMITS, DeviceCredentials, OscuClient, OutcomeKind
from worker.oscu.transport import StdlibTransport

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

    def __init__(self, mode: str, tls: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.tls = tls
        self.handshake_errors: list[str] = []
        self.requests: list[bytes] = []
        self.connections = 0
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
            self.connections += 1
            worker = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(worker)
            worker.start()

    def _handle(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError as exc:  # the client refused our certificate
                self.handshake_errors.append(type(exc).__name__)
                conn.close()
                return
        with conn:
            conn.settimeout(5)
            request = read_request(conn)
            self.requests.append(request)
            if self.mode == "silent":
                self.stop.wait(5)
            elif self.mode == "answer":
                conn.sendall(answer(keep_alive=False))
            elif self.mode == "keep_alive":  # answer every request on the connection
                while request:
                    conn.sendall(answer(keep_alive=True))
                    request = read_request(conn)
                    if request:
                        self.requests.append(request)
            elif self.mode == "idle_close":  # answer as if keeping it, then hang up idle
                conn.sendall(answer(keep_alive=True))
            elif self.mode == "accented_header":  # RFC 9110 obs-text in a header value
                conn.sendall(
                    answer(keep_alive=False).replace(
                        b"\r\n\r\n", "\r\nX-Gw-Msg: Requête traitée\r\n\r\n".encode(), 1
                    )
                )
            # mode "close": leave the with-block, closing without a word

    def first_connection_closed(self) -> bool:
        return len(self.threads) > 1 and not self.threads[1].is_alive()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.sock.close()


def answer(*, keep_alive: bool) -> bytes:
    body = json.dumps({"resultCd": "000", "resultMsg": "ok", "data": None}).encode()
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@contextlib.contextmanager
def serving(mode: str, tls: ssl.SSLContext | None = None) -> Iterator[TinyServer]:
    server = TinyServer(mode, tls)
    try:
        yield server
    finally:
        server.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(params=["stdlib", "httpx"])
def engine(request: pytest.FixtureRequest) -> str:
    """Both HTTP engines under the client (``ETIMS_OSCU__HTTP_ENGINE``) must classify alike."""
    return str(request.param)


def client_for(port: int, engine: str) -> OscuClient:
    limits = DEFAULT_LIMITS if engine == "httpx" else None
    return OscuClient(f"http://127.0.0.1:{port}/etims-api", timeout=SHORT, limits=limits)


@pytest.mark.parametrize("write", [True, False])
def test_refused_connection_is_transient_and_not_sent(write: bool, engine: str) -> None:
    with client_for(free_port(), engine) as client:
        outcome = client.call("saveTrnsSalesOsdc", {"invcNo": 1}, device=DEVICE, write=write)
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.TRANSIENT, False)
    assert (outcome.error, outcome.http_status) == ("ConnectError", None)


def test_silent_server_write_is_unknown(engine: str) -> None:
    with serving("silent") as server:
        with client_for(server.port, engine) as client:
            outcome = client.save_sale(DEVICE, {"invcNo": 1})
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.UNKNOWN, True)
    assert outcome.error == "ReadTimeout"
    assert 0.25 < outcome.latency_s < 3
    assert len(server.requests) == 1 and b"saveTrnsSalesOsdc" in server.requests[0]


def test_silent_server_lookup_is_transient(engine: str) -> None:
    with serving("silent") as server:
        with client_for(server.port, engine) as client:
            outcome = client.select_invoice_details(DEVICE, 1)
    assert (outcome.kind, outcome.may_have_reached_kra, outcome.error) == (
        K.TRANSIENT,
        True,
        "ReadTimeout",
    )


def test_server_hangs_up_after_reading_write_is_unknown(engine: str) -> None:
    with serving("close") as server:
        with client_for(server.port, engine) as client:
            outcome = client.insert_stock_io(DEVICE, {"sarNo": 1})
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.UNKNOWN, True)
    assert outcome.error == "RemoteProtocolError"
    assert len(server.requests) == 1


def test_real_answer_and_no_secret_in_any_log(
    caplog: pytest.LogCaptureFixture, engine: str
) -> None:
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
        with client_for(server.port, engine) as client:
            outcome = client.save_item(DEVICE, {"itemCd": "KE2NTBA0000001"})
    assert outcome.kind is K.ACCEPTED
    assert CMC_KEY.encode() in server.requests[0]  # it was sent, as a header
    if engine == "httpx":
        assert any(r.name.startswith("httpcore") for r in caplog.records)
    for record in caplog.records:
        assert CMC_KEY not in record.getMessage()
        assert CMC_KEY not in str(vars(record))


def test_one_connection_carries_a_thread_s_calls_one_after_another(engine: str) -> None:
    with serving("keep_alive") as server:
        with client_for(server.port, engine) as client:
            outcomes = [client.save_item(DEVICE, {"itemCd": f"KE2NTBA000000{i}"}) for i in range(3)]
    assert [o.kind for o in outcomes] == [K.ACCEPTED] * 3
    assert (len(server.requests), server.connections) == (3, 1)


def test_a_kept_connection_the_server_closed_is_replaced_not_reported_maybe_sent(
    engine: str,
) -> None:
    # Given a server that answers, then hangs up the idle kept-alive connection
    with serving("idle_close") as server:
        with client_for(server.port, engine) as client:
            first = client.save_sale(DEVICE, {"invcNo": 1})
            wait_until(server.first_connection_closed, timeout=5, interval=0.01)
            # When the next write goes
            second = client.save_sale(DEVICE, {"invcNo": 2})
    # Then it went over a new connection and was answered: no "maybe sent" for nothing
    assert (first.kind, second.kind) == (K.ACCEPTED, K.ACCEPTED)
    assert (len(server.requests), server.connections) == (2, 2)


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def tls_server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


def https_client(port: int, engine: str, trusting: trustme.CA | None) -> OscuClient:
    """A client for our loopback TLS server: trusting its authority, or with the default
    certificate store (which does not know it), on either engine."""
    context = None
    if trusting is not None:
        context = ssl.create_default_context()
        trusting.configure_trust(context)
    transport: httpx.BaseTransport
    if engine == "httpx":
        transport = httpx.HTTPTransport(verify=context) if context else httpx.HTTPTransport()
    else:
        transport = StdlibTransport(ssl_context=context)
    return OscuClient(f"https://127.0.0.1:{port}/etims-api", timeout=SHORT, transport=transport)


def test_a_write_over_tls_is_answered(authority: trustme.CA, engine: str) -> None:
    with serving("keep_alive", tls_server_context(authority)) as server:
        with https_client(server.port, engine, trusting=authority) as client:
            outcomes = [client.save_sale(DEVICE, {"invcNo": n}) for n in (1, 2)]
    assert [o.kind for o in outcomes] == [K.ACCEPTED, K.ACCEPTED]
    assert (len(server.requests), server.connections) == (2, 1)


def test_a_host_whose_certificate_is_not_trusted_gets_nothing(
    authority: trustme.CA, engine: str
) -> None:
    # Given a TLS server whose certificate no default authority signed (a spoofed KRA)
    with serving("keep_alive", tls_server_context(authority)) as server:
        with https_client(server.port, engine, trusting=None) as client:
            outcome = client.save_sale(DEVICE, {"invcNo": 1})
        wait_until(lambda: server.handshake_errors, timeout=5, interval=0.01, what="handshake")
    # Then the write is refused before a byte of it (the cmcKey included) went out
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.TRANSIENT, False)
    assert outcome.error == "ConnectError"
    assert server.requests == []


def test_a_worker_thread_that_ends_closes_its_connection() -> None:
    # Given a call made from a thread that then ends (the stdlib engine keeps one
    # connection per thread)
    with serving("keep_alive") as server:
        with client_for(server.port, "stdlib") as client:
            thread = threading.Thread(target=client.save_sale, args=(DEVICE, {"invcNo": 1}))
            thread.start()
            thread.join()
            del thread
            gc.collect()
            # Then the server sees its connection closed while the client lives on
            wait_until(server.first_connection_closed, timeout=5, interval=0.01)
    assert (len(server.requests), server.connections) == (1, 1)


def test_an_answer_with_an_accented_header_is_read(engine: str) -> None:
    with serving("accented_header") as server:
        with client_for(server.port, engine) as client:
            outcome = client.save_sale(DEVICE, {"invcNo": 1})
    assert outcome.kind is K.ACCEPTED


def test_a_key_with_a_line_break_is_refused_before_anything_is_sent(engine: str) -> None:
    # Given a cmcKey pasted with a trailing line break
    pasted = DeviceCredentials("P051234567A", "00", SecretStr(CMC_KEY + "\r\n"))
    with serving("answer") as server:
        with client_for(server.port, engine) as client:
            outcome = client.save_sale(pasted, {"invcNo": 1})
    # Then the call fails as not sent (safe to retry, its number free), and nothing left
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.TRANSIENT, False)
    assert server.requests in ([], [b""])
