"""Why an OSCU round trip failed, in the only terms the pipeline cares about.

What matters after a failure is not *which* socket call broke but whether KRA may have
recorded the request (invariant 2 in README.md): a request that provably never left us can be
sent again as if new, one that may have arrived must be re-sent with the identical body and
number. So every foreign exception is translated, at one boundary
(:func:`map_transport_errors`), into one of three leaves::

    OscuError
      + NotSent        the request provably never left us: safe to send again
      |   x TokenError       no OAuth token could be obtained (so nothing was sent)
      |       · TokenRejected   the token endpoint refused our consumer key/secret
      + MaybeSent      the request may have been written: the outcome is unknown
      + BadEnvelope    an answer arrived but it is not a readable OSCU envelope

httpx's tree (httpx/_exceptions.py) maps onto it as follows; the test
``tests/unit/oscu/test_oscu_errors.py`` fails if httpx grows a class this table misses.

============================== =========== ===============================================
httpx exception                maps to     why
============================== =========== ===============================================
ConnectError, ConnectTimeout   NotSent     no connection, so no request (DNS, refused, TLS)
PoolTimeout                    NotSent     waited for a pooled connection; nothing written
UnsupportedProtocol            NotSent     bad URL scheme, rejected before connecting
InvalidURL                     NotSent     the URL could not even be built
ProxyError                     NotSent     the proxy refused the tunnel; KRA saw nothing
LocalProtocolError             NotSent     h11/h2 refused to emit our request (bad header)
ReadTimeout, WriteTimeout      MaybeSent   (part of) the request was written, no answer
ReadError, WriteError          MaybeSent   reset mid-exchange: KRA may have the request
CloseError                     MaybeSent   the exchange was under way when the socket broke
RemoteProtocolError            MaybeSent   e.g. the server hung up without answering
DecodingError                  BadEnvelope an answer came, but its encoding is broken
TooManyRedirects               BadEnvelope an answer came, but not an OSCU one
HTTPStatusError                BadEnvelope only raise_for_status() raises it: an answer
StreamError and its 4 leaves   BadEnvelope misuse of a response stream: the answer is lost
CookieConflict                 BadEnvelope cookie-jar misuse after an answer
TimeoutException, NetworkError MaybeSent   bases, reached only by an unforeseen subclass:
ProtocolError, TransportError              assume the worst for a write
RequestError, HTTPError
============================== =========== ===============================================

Messages carry the exception class and httpx's text only; httpx never puts header values
into its messages, so no cmcKey or token can leak through them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

__all__ = [
    "BadEnvelope",
    "MaybeSent",
    "NotSent",
    "OscuError",
    "TokenError",
    "TokenRejected",
    "map_transport_errors",
]


class OscuError(Exception):
    """An OSCU round trip did not produce a readable answer."""


class NotSent(OscuError):
    """The request provably never left this process: sending it again cannot sign twice."""


class MaybeSent(OscuError):
    """The request may have reached KRA: resend the identical body, never a new number."""


class BadEnvelope(OscuError):
    """An answer arrived, but it is not a parseable OSCU envelope."""


class TokenError(NotSent):
    """No OAuth bearer token could be obtained, so the OSCU request itself was never sent."""


class TokenRejected(TokenError):
    """The token endpoint refused the consumer key/secret: a configuration problem, not luck."""


#: Most specific first: ``isinstance`` order matters because the leaves share bases.
_MAPPING: tuple[tuple[type[Exception], type[OscuError]], ...] = (
    (httpx.ConnectError, NotSent),
    (httpx.ConnectTimeout, NotSent),
    (httpx.PoolTimeout, NotSent),
    (httpx.UnsupportedProtocol, NotSent),
    (httpx.ProxyError, NotSent),
    (httpx.LocalProtocolError, NotSent),
    (httpx.InvalidURL, NotSent),
    (httpx.ReadTimeout, MaybeSent),
    (httpx.WriteTimeout, MaybeSent),
    (httpx.ReadError, MaybeSent),
    (httpx.WriteError, MaybeSent),
    (httpx.CloseError, MaybeSent),
    (httpx.RemoteProtocolError, MaybeSent),
    (httpx.DecodingError, BadEnvelope),
    (httpx.TooManyRedirects, BadEnvelope),
    (httpx.HTTPStatusError, BadEnvelope),
    (httpx.StreamConsumed, BadEnvelope),
    (httpx.StreamClosed, BadEnvelope),
    (httpx.ResponseNotRead, BadEnvelope),
    (httpx.RequestNotRead, BadEnvelope),
    (httpx.StreamError, BadEnvelope),
    (httpx.CookieConflict, BadEnvelope),
    # Bases last: an unforeseen subclass may have written the request, so assume it did.
    (httpx.TimeoutException, MaybeSent),
    (httpx.NetworkError, MaybeSent),
    (httpx.ProtocolError, MaybeSent),
    (httpx.TransportError, MaybeSent),
    (httpx.RequestError, MaybeSent),
    (httpx.HTTPError, MaybeSent),
)

#: Every httpx exception class this module translates (used by the completeness test).
HANDLED: tuple[type[Exception], ...] = tuple(source for source, _ in _MAPPING)


def translate(exc: Exception) -> OscuError | None:
    """The :class:`OscuError` for an httpx exception, or None if it is not one of httpx's."""
    for source, target in _MAPPING:
        if isinstance(exc, source):
            return target(f"{type(exc).__name__}: {exc}")
    return None


@contextlib.contextmanager
def map_transport_errors() -> Iterator[None]:
    """Re-raise any httpx exception inside the block as the most specific :class:`OscuError`.

    The original stays reachable as ``__cause__`` for debugging; anything that is not an
    httpx exception (a bug of ours) passes through untouched.
    """
    try:
        yield
    except OscuError:
        raise
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc
