"""The client-credentials token provider on its own: cache, early refresh, invalidate, locks."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from worker.oscu import ClientCredentialsTokenProvider, TokenError, TokenRejected

TOKEN_URL = "http://127.0.0.1:9/v1/token/generate"
KEY, SECRET = "ck-KEY-123", "cs-SECRET-456"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Server:
    def __init__(self, expires_in: Any = "3599", delay_s: float = 0.0) -> None:
        self.expires_in = expires_in
        self.delay_s = delay_s
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        time.sleep(self.delay_s)
        token = f"token-{len(self.requests)}"
        return httpx.Response(200, json={"access_token": token, "expires_in": self.expires_in})


def make(server: Any, clock: FakeClock | None = None) -> ClientCredentialsTokenProvider:
    return ClientCredentialsTokenProvider(
        TOKEN_URL,
        SecretStr(KEY),
        SecretStr(SECRET),
        transport=httpx.MockTransport(server),
        clock=clock or FakeClock(),
    )


def test_request_shape() -> None:
    server = Server()
    provider = make(server)
    assert provider.get_token() == "token-1"
    (request,) = server.requests
    assert request.method == "GET"
    assert request.url.params["grant_type"] == "client_credentials"
    expected = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["accept"] == "application/json"
    provider.close()


@pytest.mark.parametrize("expires_in", ["3599", 3599, 3599.0])
def test_cached_until_60_seconds_before_expiry(expires_in: Any) -> None:
    clock, server = FakeClock(), Server(expires_in)
    provider = make(server, clock)
    assert provider.get_token() == "token-1"
    clock.now += 3599 - 60 - 1
    assert provider.get_token() == "token-1"
    clock.now += 1
    assert provider.get_token() == "token-2"
    assert len(server.requests) == 2
    provider.close()


@pytest.mark.parametrize("expires_in", [None, "soon", "-5", "nan", 0])
def test_garbled_expiry_gets_a_short_lifetime(expires_in: Any) -> None:
    clock, server = FakeClock(), Server(expires_in)
    provider = make(server, clock)
    provider.get_token()
    clock.now += 300
    assert provider.get_token() == "token-2"
    provider.close()


def test_short_lived_token_is_still_reused_for_half_its_life() -> None:
    clock, server = FakeClock(), Server("30")
    provider = make(server, clock)
    provider.get_token()
    clock.now += 14
    assert provider.get_token() == "token-1"
    clock.now += 1
    assert provider.get_token() == "token-2"
    provider.close()


def test_invalidate_only_the_token_that_failed() -> None:
    server = Server()
    provider = make(server)
    provider.get_token()
    provider.invalidate("some-older-token")
    assert provider.get_token() == "token-1"
    provider.invalidate("token-1")
    assert provider.get_token() == "token-2"
    provider.invalidate()
    assert provider.get_token() == "token-3"
    provider.close()


def test_one_fetch_at_a_time_under_threads() -> None:
    server = Server(delay_s=0.05)
    provider = make(server)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(provider.get_token())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == ["token-1"] * 16
    assert len(server.requests) == 1
    assert provider.fetch_count == 1
    provider.close()


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(401, text="nope"), TokenRejected),
        (httpx.Response(400, json={"error": "invalid_client"}), TokenRejected),
        (httpx.Response(500), TokenError),
        (httpx.Response(200, text="<html/>"), TokenError),
        (httpx.Response(200, json={"expires_in": "3599"}), TokenError),
        (httpx.Response(200, json=["token"]), TokenError),
    ],
)
def test_token_failures(response: httpx.Response, error: type[Exception]) -> None:
    provider = make(lambda request: response)
    with pytest.raises(error) as caught:
        provider.get_token()
    assert SECRET not in str(caught.value) and KEY not in str(caught.value)
    provider.close()


def test_unreachable_token_endpoint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    provider = make(handler)
    with pytest.raises(TokenError, match="unreachable"):
        provider.get_token()
    provider.close()


def test_repr_never_shows_secrets_or_token() -> None:
    provider = make(Server())
    token = provider.get_token()
    text = repr(provider) + str(provider)
    for secret in (KEY, SECRET, token, base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()):
        assert secret not in text
    assert "cached=True" in text
    provider.close()
