"""OAuth client-credentials bearer tokens for the GavaConnect host (docs/oscu.md,
"GavaConnect's gateway").

The etims-api host needs no token; GavaConnect's Apigee gateway answers 401 without one. The
token lives about an hour and there is no refresh token, so we re-run client credentials:
``GET {token_url}?grant_type=client_credentials`` with ``Authorization: Basic
base64(key:secret)`` (a POST returns 200 with an empty body there, hence GET).

Why a lock around the fetch: a Celery threads pool shares one provider. Without it, a token
expiring under load would make every thread fetch at once; with it, one thread fetches and the
others wait and reuse its token. :meth:`~ClientCredentialsTokenProvider.invalidate` takes the
token that failed so that N threads seeing the same 401 cause one re-fetch, not N.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from worker.oscu.errors import OscuError, TokenError, TokenRejected, map_transport_errors
from worker.oscu.proxy import proxy_for

__all__ = ["ClientCredentialsTokenProvider", "TokenProvider"]

#: Refresh this long before the server's expiry, so a token never dies mid-request.
DEFAULT_REFRESH_MARGIN_S = 60.0
#: Assumed lifetime when the answer omits or garbles ``expires_in``; short on purpose.
FALLBACK_EXPIRES_IN_S = 300.0
#: Never trust a token for longer than a day, whatever the server says.
MAX_EXPIRES_IN_S = 86_400.0
DEFAULT_TOKEN_TIMEOUT = httpx.Timeout(10.0)


class TokenProvider(Protocol):
    """What :class:`~worker.oscu.client.OscuClient` needs from a bearer-token source."""

    def get_token(self) -> str:
        """A currently valid token; raises :class:`TokenError` if none can be had."""
        ...

    def invalidate(self, token: str | None = None) -> None:
        """Forget ``token`` (or whatever is cached, if None) so the next call re-fetches."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class ClientCredentialsTokenProvider:
    """Fetches, caches and refreshes one client-credentials token; safe to share by threads."""

    def __init__(
        self,
        token_url: str,
        consumer_key: SecretStr,
        consumer_secret: SecretStr,
        *,
        refresh_margin_s: float = DEFAULT_REFRESH_MARGIN_S,
        timeout: httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        proxy_url: str | None = None,
    ) -> None:
        self._token_url = token_url
        basic = f"{consumer_key.get_secret_value()}:{consumer_secret.get_secret_value()}"
        self._basic = SecretStr("Basic " + base64.b64encode(basic.encode()).decode("ascii"))
        self._margin = refresh_margin_s
        self._clock = clock
        # httpx reads HTTPS_PROXY/NO_PROXY itself; an explicit proxy_url (ETIMS_OSCU__PROXY_URL)
        # is routed as the OSCU calls route it (worker/oscu/proxy.py), NO_PROXY included.
        routing: dict[str, Any] = {}
        if proxy_url and transport is None:
            routing = {"proxy": proxy_for(token_url, proxy_url), "trust_env": False}
        self._http = httpx.Client(
            timeout=timeout or DEFAULT_TOKEN_TIMEOUT, transport=transport, **routing
        )
        self._lock = threading.Lock()
        self._token: SecretStr | None = None
        self._refresh_at = 0.0
        #: How many tokens were fetched; for tests and a health view, never the tokens.
        self.fetch_count = 0

    def __repr__(self) -> str:
        cached = self._token is not None
        return f"{type(self).__name__}(token_url={self._token_url!r}, cached={cached})"

    def get_token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._token = None
                token, expires_in = self._fetch()
                lifetime = max(expires_in - self._margin, expires_in / 2)
                self._token, self._refresh_at = token, self._clock() + lifetime
            return self._token.get_secret_value()

    def invalidate(self, token: str | None = None) -> None:
        with self._lock:
            if token is None or (
                self._token is not None and self._token.get_secret_value() == token
            ):
                self._token = None

    def close(self) -> None:
        self._http.close()

    def _fetch(self) -> tuple[SecretStr, float]:
        """One GET to the token endpoint; messages name the status, never the answer body."""
        try:
            with map_transport_errors():
                response = self._http.get(
                    self._token_url,
                    params={"grant_type": "client_credentials"},
                    headers={
                        "Authorization": self._basic.get_secret_value(),
                        "Accept": "application/json",
                    },
                )
        except OscuError as exc:
            raise TokenError(f"token endpoint unreachable: {exc}") from exc
        self.fetch_count += 1
        if response.status_code in (400, 401, 403):
            raise TokenRejected(
                f"token endpoint refused the credentials: HTTP {response.status_code}"
            )
        if response.status_code != 200:
            raise TokenError(f"token endpoint answered HTTP {response.status_code}")
        try:
            payload: Any = response.json()
        except ValueError:
            raise TokenError("token endpoint answered without JSON") from None
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint answer has no access_token")
        return SecretStr(token), _expires_in(payload.get("expires_in"))


def _expires_in(raw: object) -> float:
    """``expires_in`` arrives as ``"3599"`` or ``3599``; anything else gets a short default."""
    try:
        value = float(str(raw))
    except ValueError:
        return FALLBACK_EXPIRES_IN_S
    if not value > 0:  # also catches NaN
        return FALLBACK_EXPIRES_IN_S
    return min(value, MAX_EXPIRES_IN_S)
