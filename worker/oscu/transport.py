"""A lean HTTP/1.1 transport for the OSCU client: the standard library's ``http.client``
behind httpx's transport interface.

Why: every OSCU call is one small POST, made sequentially by one drain thread. httpx's
default transport (httpcore's connection pool and the pure-Python h11 parser) spends several
times the CPU of ``http.client`` on such a call, a share of a worker's CPU that shows in the
pipeline's throughput (figures: ``bench/README.md``, 2026-11-30). Everything above the
transport (requests, responses, timeouts, the error classes that decide NotSent vs
MaybeSent) stays httpx's, and ``ETIMS_OSCU__HTTP_ENGINE=httpx`` puts httpx's own transport
back.

One connection per thread and per origin, kept alive: a thread never has two calls in
flight, so there is nothing to pool. The connection count is therefore the number of worker
threads (``max_connections`` applies to the httpx engine only).

Errors keep httpx's meaning, which is what :mod:`worker.oscu.errors` classifies:

- before any byte of the request was written (connect, TLS handshake):
  :class:`httpx.ConnectError` / :class:`httpx.ConnectTimeout`, and a request http.client
  refuses to form (a header value with CR/LF): :class:`httpx.LocalProtocolError` -- not sent;
- while writing: :class:`httpx.WriteError` / :class:`httpx.WriteTimeout`, and after:
  :class:`httpx.ReadTimeout`, :class:`httpx.ReadError`, :class:`httpx.RemoteProtocolError`
  -- maybe sent. Anything unforeseen from then on is a WriteError or ReadError too: never
  an exception the client's classification does not know.

Through an HTTP proxy (``proxy``, chosen by :mod:`worker.oscu.proxy`): an ``https`` origin is
reached through a CONNECT tunnel (TLS end to end, the proxy sees only host and port), an
``http`` origin by sending the absolute URL to the proxy. A proxy that cannot be reached, or
that refuses the tunnel, fails before our request is written: :class:`httpx.ConnectError` /
:class:`httpx.ProxyError`, not sent -- the same split as without a proxy.

A kept-alive connection the server has closed meanwhile is found before reuse (its socket
reads as ready: end of file, or bytes nobody asked for) and replaced, as httpcore does;
otherwise a request written into a dead connection would come back "maybe sent" for
nothing.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import weakref
from typing import Any

import httpx

from worker.oscu.proxy import basic_proxy_auth

__all__ = ["StdlibTransport"]

_Origin = tuple[str, str, int]


class StdlibTransport(httpx.BaseTransport):
    """``http.client`` connections, one per (thread, origin), behind ``handle_request``."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, proxy: httpx.URL | None = None
    ) -> None:
        self._ssl_context = ssl_context
        self._proxy = proxy
        #: Header lines every request through the proxy carries (credentials, if any).
        self._proxy_headers: dict[str, str] = {}
        if proxy is not None and (auth := basic_proxy_auth(proxy)) is not None:
            self._proxy_headers["Proxy-Authorization"] = auth
        self._local = threading.local()
        self._lock = threading.Lock()
        #: every open connection, whichever thread owns it, for :meth:`close`; weakly, so
        #: that a thread that ends takes its connection with it
        self._open: weakref.WeakSet[http.client.HTTPConnection] = weakref.WeakSet()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        conn = self._connection(origin, timeouts.get("connect"))
        body = request.read()
        # An http origin through the proxy: the proxy needs the absolute URL (RFC 9112 3.2.2).
        forward = self._proxy is not None and url.scheme == "http"
        target = str(url.copy_with(fragment=None)) if forward else url.raw_path.decode("ascii")
        extra = self._proxy_headers if forward else {}
        try:
            self._write(conn, request, target, extra, body, timeouts.get("write"))
            response, content = self._read(conn, timeouts.get("read"))
        except BaseException:
            self._discard(origin, conn)
            raise
        if response.will_close:
            self._discard(origin, conn)
        return httpx.Response(
            response.status,
            # As bytes: http.client decodes header lines as latin-1, and httpx would encode a
            # str value as ASCII, failing on a gateway's accented message after the exchange.
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.getheaders()],
            content=content,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode()},
        )

    def close(self) -> None:
        with self._lock:
            connections, self._open = list(self._open), weakref.WeakSet()
        for conn in connections:
            conn.close()

    # -- one connection per thread and origin ---------------------------------------------------
    def _connection(self, origin: _Origin, connect_timeout: float | None) -> Any:
        mine: dict[_Origin, http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "connections", {}
        )
        conn = mine.get(origin)
        if conn is not None and (conn.sock is None or _gone(conn.sock)):
            self._discard(origin, conn)
            conn = None
        if conn is None:
            conn = self._connect(origin, connect_timeout)
            mine[origin] = conn
            with self._lock:
                self._open.add(conn)
        return conn

    def _connect(self, origin: _Origin, timeout: float | None) -> http.client.HTTPConnection:
        scheme, host, port = origin
        # Through a proxy, the socket goes to the proxy; https then tunnels to the origin.
        via_host, via_port = host, port
        if self._proxy is not None:
            via_host, via_port = self._proxy.host, self._proxy.port or 80
        conn: http.client.HTTPConnection
        if scheme == "https":
            if self._ssl_context is None:  # once: it loads the certificate bundle
                self._ssl_context = httpx.create_ssl_context()
            conn = http.client.HTTPSConnection(
                via_host, via_port, timeout=timeout, context=self._ssl_context
            )
            if self._proxy is not None:
                conn.set_tunnel(host, port, headers=self._proxy_headers)
        else:
            conn = http.client.HTTPConnection(via_host, via_port, timeout=timeout)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from exc
        except OSError as exc:  # refused, unreachable, name resolution, TLS handshake
            conn.close()
            if type(exc) is OSError and str(exc).startswith("Tunnel connection failed"):
                # http.client's words for a CONNECT answered with a non-2xx status
                raise httpx.ProxyError(str(exc)) from exc
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except http.client.HTTPException as exc:  # a proxy's CONNECT answer we cannot read
            conn.close()
            raise httpx.ProxyError(str(exc) or type(exc).__name__) from exc
        return conn

    def _discard(self, origin: _Origin, conn: http.client.HTTPConnection) -> None:
        conn.close()
        mine = self._local.__dict__.get("connections", {})
        if mine.get(origin) is conn:
            del mine[origin]
        with self._lock:
            self._open.discard(conn)

    # -- one exchange ---------------------------------------------------------------------------
    @staticmethod
    def _write(
        conn: Any,
        request: httpx.Request,
        target: str,
        extra: dict[str, str],
        body: bytes,
        timeout: float | None,
    ) -> None:
        try:  # buffered only: nothing leaves before endheaders
            # httpx already put Host and Content-Length in the request's headers.
            conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.raw:
                conn.putheader(name, value)  # refuses CR/LF in a value (a pasted cmcKey)
            for header, text in extra.items():
                conn.putheader(header, text)
        except (ValueError, http.client.HTTPException) as exc:
            raise httpx.LocalProtocolError(str(exc) or type(exc).__name__) from exc
        try:
            conn.sock.settimeout(timeout)
            conn.endheaders(body)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out writing") from exc
        except Exception as exc:  # OSError, or the connection closed under us at shutdown
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    @staticmethod
    def _read(conn: Any, timeout: float | None) -> tuple[http.client.HTTPResponse, bytes]:
        try:
            conn.sock.settimeout(timeout)
            response = conn.getresponse()
            return response, response.read()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out reading") from exc
        except (http.client.RemoteDisconnected, http.client.HTTPException) as exc:
            # no status line, a malformed one, a body cut short, an oversized header
            message = str(exc) or type(exc).__name__
            raise httpx.RemoteProtocolError(message) from exc
        except Exception as exc:  # reset by peer; the connection closed under us at shutdown
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


def _gone(sock: socket.socket) -> bool:
    """Whether an idle kept-alive socket can no longer carry a request: readable means the
    server closed it (end of file) or sent something unasked; either way, do not reuse."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
