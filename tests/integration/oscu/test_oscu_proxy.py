"""OSCU calls through a real HTTP proxy process on loopback: HTTPS_PROXY / HTTP_PROXY /
NO_PROXY and ETIMS_OSCU__PROXY_URL, on both HTTP engines, with the NotSent / MaybeSent split
kept exact (a proxy that refuses us means KRA saw nothing)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trustme
from pydantic import SecretStr

from schemas.settings import Settings
from simulator.process import SimulatorProcess
from worker.oscu import DeviceCredentials, OscuClient, OutcomeKind
from worker.oscu.proxy import ProxyConfigError, proxy_for

K = OutcomeKind
CMC_KEY = "cmc-SECRET-proxy-0123456789"
DEVICE = DeviceCredentials("P051234567A", "00", SecretStr(CMC_KEY))
SHORT = httpx.Timeout(2.0, connect=2.0)
REPO = Path(__file__).resolve().parents[3]
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@dataclass
class Proxy:
    port: int
    log: Path
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()


def start_proxy(tmp_path: Path, *args: str) -> Proxy:
    log = tmp_path / f"proxy-{len(list(tmp_path.glob('proxy-*')))}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.proxy_server", "--log", str(log), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return Proxy(port, log, process)


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[list[Proxy]]:
    started: list[Proxy] = []
    yield started
    for proxy in started:
        proxy.process.terminate()
        proxy.process.wait(timeout=10)


@pytest.fixture
def proxy(tmp_path: Path, proxies: list[Proxy]) -> Proxy:
    proxies.append(start_proxy(tmp_path))
    return proxies[-1]


@pytest.fixture(params=["stdlib", "httpx"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@dataclass
class TlsOscu:
    """A loopback HTTPS server standing in for KRA: answers 000, or hangs up after reading."""

    context: ssl.SSLContext
    hang_up: bool = False
    requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        with conn:
            while request := _read_request(conn):
                self.requests.append(request)
                if self.hang_up:
                    return
                body = json.dumps({"resultCd": "000", "resultMsg": "ok", "data": None}).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
    except OSError:
        return b""
    return head + b"\r\n\r\n" + body


@pytest.fixture
def kra(authority: trustme.CA) -> Iterator[TlsOscu]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server = TlsOscu(context)
    yield server
    server.close()


def https_client(
    port: int, engine: str, authority: trustme.CA, proxy_url: str | None = None
) -> OscuClient:
    """A client built the way the worker builds it: the proxy is chosen from the environment
    (or ``proxy_url``) inside OscuClient, on the engine under test."""
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    limits = httpx.Limits(max_connections=4) if engine == "httpx" else None
    return OscuClient(
        f"https://127.0.0.1:{port}/etims-api",
        timeout=SHORT,
        limits=limits,
        proxy_url=proxy_url,
        ssl_context=trusting,
    )


def test_https_proxy_from_the_environment_tunnels_every_call(
    kra: TlsOscu, proxy: Proxy, authority: trustme.CA, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a business whose only way out is the proxy named in HTTPS_PROXY
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    # When the worker signs two sales
    with https_client(kra.port, engine, authority) as client:
        outcomes = [client.save_sale(DEVICE, {"invcNo": n}) for n in (1, 2)]
    # Then both are accepted, and they went through a CONNECT tunnel to KRA's host
    assert [o.kind for o in outcomes] == [K.ACCEPTED, K.ACCEPTED]
    assert len(kra.requests) == 2
    tunnels = [line for line in proxy.lines() if line.startswith("CONNECT ")]
    assert tunnels and all(f"127.0.0.1:{kra.port}" in line for line in tunnels)
    # (TLS end to end: the proxy never saw the cmcKey)
    assert CMC_KEY not in proxy.log.read_text()


def test_no_proxy_sends_a_listed_host_direct(
    kra: TlsOscu, proxy: Proxy, authority: trustme.CA, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    with https_client(kra.port, engine, authority) as client:
        outcome = client.save_sale(DEVICE, {"invcNo": 1})
    assert outcome.kind == K.ACCEPTED and len(kra.requests) == 1
    assert proxy.lines() == []


def test_explicit_proxy_url_wins_and_carries_credentials(
    tmp_path: Path,
    kra: TlsOscu,
    proxies: list[Proxy],
    authority: trustme.CA,
    engine: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given HTTPS_PROXY naming one proxy, and ETIMS_OSCU__PROXY_URL another that wants a login
    ignored = start_proxy(tmp_path)
    wanted = start_proxy(tmp_path, "--user", "shop:pa55word")
    proxies += [ignored, wanted]
    monkeypatch.setenv("HTTPS_PROXY", ignored.url)
    monkeypatch.setenv("ETIMS_OSCU__PROXY_URL", f"http://shop:pa55word@127.0.0.1:{wanted.port}")
    explicit = Settings().oscu.proxy_url
    assert explicit is not None and "pa55word" not in repr(Settings().oscu)
    with https_client(kra.port, engine, authority, explicit.get_secret_value()) as client:
        outcome = client.save_sale(DEVICE, {"invcNo": 1})
    assert outcome.kind == K.ACCEPTED and len(kra.requests) == 1
    assert ignored.lines() == []
    assert [line.split(" auth=")[0] for line in wanted.lines()] == [f"CONNECT 127.0.0.1:{kra.port}"]
    assert "pa55word" not in outcome.message


def test_a_proxy_refusing_the_tunnel_means_not_sent(
    tmp_path: Path,
    kra: TlsOscu,
    proxies: list[Proxy],
    authority: trustme.CA,
    engine: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a corporate proxy that forbids KRA's port
    proxies.append(start_proxy(tmp_path, "--deny-port", str(kra.port)))
    monkeypatch.setenv("HTTPS_PROXY", proxies[-1].url)
    with https_client(kra.port, engine, authority) as client:
        outcome = client.save_sale(DEVICE, {"invcNo": 1})
    # Then the sale is retried as new: KRA never saw it, the number is not held back
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.TRANSIENT, False)
    assert outcome.error == "ProxyError"
    assert kra.requests == []


def test_a_proxy_that_is_down_means_not_sent(
    kra: TlsOscu, authority: trustme.CA, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    with https_client(kra.port, engine, authority) as client:
        outcome = client.save_sale(DEVICE, {"invcNo": 1})
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.TRANSIENT, False)
    assert outcome.error == "ConnectError"
    assert kra.requests == []


def test_kra_hanging_up_behind_the_proxy_means_maybe_sent(
    authority: trustme.CA, proxy: Proxy, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given KRA reads the whole sale through the tunnel and hangs up without an answer
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server = TlsOscu(context, hang_up=True)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    try:
        with https_client(server.port, engine, authority) as client:
            outcome = client.save_sale(DEVICE, {"invcNo": 1})
    finally:
        server.close()
    # Then the outcome is unknown: resend the identical body, never a new number
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.UNKNOWN, True)
    assert len(server.requests) == 1


def test_http_proxy_forwards_calls_to_an_http_host(
    tmp_path: Path, proxy: Proxy, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an OSCU host on plain http (the simulator) and HTTP_PROXY, via the worker's settings
    sim = SimulatorProcess(tmp_path / "ledger.jsonl", approved_serials=["DEV-PROXY"])
    sim.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("ETIMS_OSCU__HTTP_ENGINE", engine)
        settings = Settings()
        with OscuClient.from_settings(sim.url, settings.oscu) as client:
            outcome = client.init_device("P051234567A", "00", "DEV-PROXY")
    finally:
        sim.stop()
    assert outcome.kind == K.ACCEPTED, outcome
    assert [line.split(" auth=")[0] for line in proxy.lines()] == [
        f"POST {sim.url}/selectInitOsdcInfo"
    ]


def test_a_proxy_url_of_another_scheme_is_refused_clearly() -> None:
    with pytest.raises(ProxyConfigError, match="ETIMS_OSCU__PROXY_URL: only http://"):
        proxy_for("https://etims-api.kra.go.ke/etims-api", "socks5://user:secret@proxy:1080")
