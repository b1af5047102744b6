"""Which HTTP proxy, if any, an OSCU call goes through.

Why: a business behind a corporate proxy reaches KRA only through it. The token fetch (an
``httpx.Client``) always honoured ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``; the OSCU calls
go through a bare transport that reads no environment, so the choice is made here, once per
client, for the one base URL it talks to. The standard library's reading of those variables
(:mod:`urllib.request`, the one curl and requests follow too) decides, so both HTTP engines
route alike.

``ETIMS_OSCU__PROXY_URL`` names a proxy explicitly; it wins over the environment's
``HTTPS_PROXY``/``HTTP_PROXY``, while ``NO_PROXY`` still sends a listed host direct (a
simulator on loopback, an internal gateway). Only ``http://`` proxies are supported (the
usual corporate kind: HTTPS to KRA goes through a CONNECT tunnel, end-to-end encrypted).
"""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Callable

import httpx

__all__ = ["ProxyConfigError", "basic_proxy_auth", "proxy_for", "without_userinfo"]


#: NO_PROXY matching as urllib does it (public since Python 3.x, absent from typeshed).
_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


class ProxyConfigError(ValueError):
    """A proxy URL this client cannot use; names the variable, never the credentials."""


def proxy_for(url: str | httpx.URL, explicit: str | None = None) -> httpx.URL | None:
    """The proxy for requests to ``url``: None means connect direct."""
    target = httpx.URL(url)
    environment = urllib.request.getproxies_environment()
    if target.host and _bypass(target.host, environment):
        return None
    chosen = explicit or environment.get(target.scheme) or environment.get("all")
    if not chosen:
        return None
    if "://" not in chosen:  # "proxy.corp:3128", as curl reads it
        chosen = "http://" + chosen
    try:
        proxy = httpx.URL(chosen)
    except httpx.InvalidURL as exc:
        raise ProxyConfigError(f"{_origin_of(explicit)} is not a valid URL") from exc
    if proxy.scheme != "http" or not proxy.host:
        raise ProxyConfigError(
            f"{_origin_of(explicit)}: only http://host:port proxies are supported "
            f"(got scheme {proxy.scheme!r})"
        )
    return proxy


def basic_proxy_auth(proxy: httpx.URL) -> str | None:
    """The ``Proxy-Authorization`` value for credentials in the proxy URL, if any."""
    if not proxy.username:
        return None
    pair = f"{proxy.username}:{proxy.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def without_userinfo(proxy: httpx.URL) -> httpx.URL:
    """The proxy URL without credentials: safe to show in a message."""
    return proxy.copy_with(username=None, password=None)


def _origin_of(explicit: str | None) -> str:
    return "ETIMS_OSCU__PROXY_URL" if explicit else "the proxy from HTTPS_PROXY/HTTP_PROXY"
