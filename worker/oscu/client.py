"""The OSCU HTTP client: one POST per call, one :class:`CallOutcome` back, never an exception
for a network or KRA failure.

Layers, each with one concern (the httpx ``Client.send`` pattern, STYLE.md §1):

``call`` (encode, time, scrub, log) -> ``_exchange`` (the one 401 re-try with a fresh token)
-> ``_attempt`` (headers, one round trip, translate errors) -> :mod:`~worker.oscu.classify`.

Thread-safety: one client is shared by all threads of a Celery threads pool; its transport
keeps a connection per thread (or, with the ``httpx`` engine, a thread-safe pool); the client
itself holds no per-call state, and the token provider locks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
import time
from collections.abc import Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any

import httpx

from schemas.settings import OscuSettings
from worker.oscu._secrets import scrub
from worker.oscu.auth import ClientCredentialsTokenProvider, TokenProvider
from worker.oscu.classify import classify_response, outcome_for_error
from worker.oscu.credentials import DeviceCredentials
from worker.oscu.endpoints import ENDPOINTS, INIT_ENDPOINT, EndpointsMixin, endpoint_path
from worker.oscu.errors import OscuError, map_transport_errors
from worker.oscu.outcome import CallOutcome
from worker.oscu.proxy import proxy_for
from worker.oscu.transport import StdlibTransport

__all__ = ["DEFAULT_LIMITS", "DEFAULT_TIMEOUT", "ENDPOINTS", "DeviceCredentials", "OscuClient"]

logger = logging.getLogger("etims_relay.oscu")

#: oscu-reference §9: 10 s to connect, 30 s to read (KRA signs in ~2 s but congests).
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0, pool=10.0)
#: Keep as many idle connections as we allow open: a threads pool reuses them all.
DEFAULT_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64)
USER_AGENT = "etims-relay"


def _json_default(value: object) -> object:
    """Money is Decimal in schemas/; OSCU wants JSON numbers with at most 2 decimals."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class OscuClient(EndpointsMixin):
    """Talks to one OSCU base URL (etims-api host, GavaConnect, or the simulator)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout | None = None,
        limits: httpx.Limits | None = None,
        transport: httpx.BaseTransport | None = None,
        token_provider: TokenProvider | None = None,
        apigee_app_id: str | None = None,
        flavour: str = "etims-api",
        proxy_url: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        endpoint_path(INIT_ENDPOINT, flavour)  # refuse an unknown flavour now, not per call
        self._flavour = flavour
        # The transport, not an httpx.Client: a call is one POST whose answer we classify
        # ourselves, so the Client's layers (cookie jar, auth flow, redirects -- a redirect of
        # a POST is an answer to classify, never something to follow -- event hooks) would
        # only add work: they were a sixth of a drain's CPU per job (bench/README.md).
        # By default http.client underneath (worker/oscu/transport.py: a third of the CPU);
        # ``limits`` asks for httpx's own pooled transport. Either way through the proxy that
        # HTTPS_PROXY/HTTP_PROXY/NO_PROXY or ``proxy_url`` name for this base URL.
        if transport is None:
            proxy = proxy_for(self._base_url, proxy_url)
            transport = (
                httpx.HTTPTransport(limits=limits, proxy=proxy, verify=ssl_context or True)
                if limits is not None
                else StdlibTransport(proxy=proxy, ssl_context=ssl_context)
            )
        self._transport = transport
        self._timeout = (timeout or DEFAULT_TIMEOUT).as_dict()
        self._urls: dict[str, httpx.URL] = {}
        self._token_provider = token_provider
        self._owns_token_provider = False
        self._apigee_app_id = apigee_app_id or None

    @classmethod
    def from_settings(
        cls,
        oscu_url: str,
        settings: OscuSettings,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> OscuClient:
        """Build from configuration; a bearer token is used only when ``token_url`` is set."""
        timeout = httpx.Timeout(
            settings.read_timeout_s,
            connect=settings.connect_timeout_s,
            pool=settings.connect_timeout_s,
        )
        proxy_url = settings.proxy_url.get_secret_value() if settings.proxy_url else None
        provider = None
        if settings.token_url:
            if settings.consumer_key is None or settings.consumer_secret is None:
                raise ValueError("oscu.token_url is set but consumer_key/consumer_secret are not")
            provider = ClientCredentialsTokenProvider(
                settings.token_url,
                settings.consumer_key,
                settings.consumer_secret,
                timeout=timeout,
                transport=transport,
                proxy_url=proxy_url,
            )
        limits = None
        if settings.http_engine == "httpx":
            limits = httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            )
        client = cls(
            oscu_url,
            timeout=timeout,
            limits=limits,
            transport=transport,
            token_provider=provider,
            apigee_app_id=settings.apigee_app_id,
            flavour=settings.flavour,
            proxy_url=proxy_url,
        )
        client._owns_token_provider = provider is not None
        return client

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def flavour(self) -> str:
        """Which host's path names the client uses (``etims-api`` or ``gavaconnect``)."""
        return self._flavour

    def __repr__(self) -> str:
        bearer = self._token_provider is not None
        return (
            f"{type(self).__name__}(base_url={self._base_url!r}, flavour={self._flavour!r},"
            f" bearer={bearer})"
        )

    def __enter__(self) -> OscuClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections (and the token provider, if we built it)."""
        self._transport.close()
        if self._owns_token_provider and self._token_provider is not None:
            self._token_provider.close()

    # -- the one entry point --------------------------------------------------------------------
    def call(
        self,
        endpoint: str,
        body: Mapping[str, Any],
        *,
        device: DeviceCredentials | None,
        write: bool,
        encoded: bytes | None = None,
    ) -> CallOutcome:
        """POST ``body`` to ``{base_url}/{path}`` and classify the answer; ``endpoint`` is the
        spec name, ``path`` its name on this flavour of host (the same on etims-api).

        ``encoded``, when given, is sent as is instead of serialising ``body``: the drain
        passes the exact text it froze before the first send, so every resend repeats those
        bytes and the attempt's hash is the hash of what went out.

        Raises only for our own bugs (no device for a non-init endpoint, a body that is not
        JSON-serialisable); every network or KRA failure comes back as a :class:`CallOutcome`.
        """
        endpoint = endpoint.strip("/")
        if encoded is None:
            content = self._encode(endpoint, body, device)
        elif device is None and endpoint != INIT_ENDPOINT:
            raise ValueError(f"{endpoint} needs device credentials (only init goes without)")
        else:
            content = encoded
        started = time.perf_counter()
        outcome, token = self._exchange(endpoint, content, device, write)
        secrets = (device.cmc_key.get_secret_value() if device else None, token)
        outcome = dataclasses.replace(
            outcome,
            latency_s=time.perf_counter() - started,
            message=scrub(outcome.message, secrets),
        )
        self._log(outcome)
        return outcome

    def _encode(
        self, endpoint: str, body: Mapping[str, Any], device: DeviceCredentials | None
    ) -> bytes:
        """JSON body; ``tin``/``bhfId`` added when absent (some GavaConnect lookups need them)."""
        payload = dict(body)
        if device is not None:
            payload.setdefault("tin", device.tin)
            payload.setdefault("bhfId", device.bhf_id)
        elif endpoint != INIT_ENDPOINT:
            raise ValueError(f"{endpoint} needs device credentials (only init goes without)")
        text = json.dumps(
            payload,
            default=_json_default,
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
        )
        return text.encode("utf-8")

    def _exchange(
        self, endpoint: str, content: bytes, device: DeviceCredentials | None, write: bool
    ) -> tuple[CallOutcome, str | None]:
        """One attempt, plus one more with a fresh token if the gateway said 401.

        Re-sending after a 401 is safe even for a write: the gateway refused it before KRA's
        application saw it.
        """
        outcome, token = self._attempt(endpoint, content, device, write)
        if token is None or self._token_provider is None or not _token_refused(outcome):
            return outcome, token
        self._token_provider.invalidate(token)
        return self._attempt(endpoint, content, device, write)

    def _attempt(
        self, endpoint: str, content: bytes, device: DeviceCredentials | None, write: bool
    ) -> tuple[CallOutcome, str | None]:
        token: str | None = None
        try:
            headers, token = self._headers(endpoint, device)
            request = httpx.Request(
                "POST",
                self._url(endpoint),
                content=content,
                headers=headers,
                extensions={"timeout": self._timeout},
            )
            with map_transport_errors():
                response = self._transport.handle_request(request)
                try:
                    response.read()
                finally:
                    response.close()
        except OscuError as exc:
            return outcome_for_error(endpoint, exc, write=write), token
        outcome = classify_response(
            endpoint, response.status_code, response.headers, response.content, write=write
        )
        return outcome, token

    def _url(self, endpoint: str) -> httpx.URL:
        url = self._urls.get(endpoint)
        if url is None:  # parsed once per endpoint (a dict write is atomic under the GIL)
            path = endpoint_path(endpoint, self._flavour)
            url = self._urls[endpoint] = httpx.URL(f"{self._base_url}/{path}")
        return url

    def _headers(
        self, endpoint: str, device: DeviceCredentials | None
    ) -> tuple[dict[str, str], str | None]:
        """Device headers on every call but init; bearer and apigee_app_id on all calls."""
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        if device is not None and endpoint != INIT_ENDPOINT:
            headers["tin"] = device.tin
            headers["bhfId"] = device.bhf_id
            headers["cmcKey"] = device.cmc_key.get_secret_value()
        token = None
        if self._token_provider is not None:
            token = self._token_provider.get_token()
            headers["Authorization"] = f"Bearer {token}"
        if self._apigee_app_id:
            headers["apigee_app_id"] = self._apigee_app_id
        return headers, token

    @staticmethod
    def _log(outcome: CallOutcome) -> None:
        """One line per call: what an operator needs, never headers, bodies or messages."""
        latency_ms = round(outcome.latency_s * 1000, 1)
        logger.log(
            logging.DEBUG if outcome.ok else logging.INFO,
            "oscu %s -> %s code=%s http=%s latency_ms=%.1f error=%s",
            outcome.endpoint,
            outcome.kind.value,
            outcome.result_code,
            outcome.http_status,
            latency_ms,
            outcome.error,
            extra={
                "oscu_endpoint": outcome.endpoint,
                "oscu_outcome": outcome.kind.value,
                "oscu_result_code": outcome.result_code,
                "oscu_http_status": outcome.http_status,
                "oscu_latency_ms": latency_ms,
            },
        )


def _token_refused(outcome: CallOutcome) -> bool:
    """HTTP 401, or a GavaConnect/Apigee body saying 401 / token expired."""
    return outcome.http_status == 401 or outcome.extra.get("embedded_status") == 401
