"""Every exception httpx exports is mapped, deliberately, to NotSent / MaybeSent / BadEnvelope.

The httpx tests/test_exceptions.py pattern: if an httpx upgrade adds an exception class, the
completeness test fails until someone decides what it means for invariant 2.
"""

from __future__ import annotations

import inspect

import httpx
import pytest

from worker.oscu.errors import (
    HANDLED,
    BadEnvelope,
    MaybeSent,
    NotSent,
    OscuError,
    TokenError,
    TokenRejected,
    map_transport_errors,
)

#: The decision for each class, written out by hand (the point of the test).
EXPECTED: dict[str, type[OscuError]] = {
    "ConnectError": NotSent,
    "ConnectTimeout": NotSent,
    "PoolTimeout": NotSent,
    "UnsupportedProtocol": NotSent,
    "ProxyError": NotSent,
    "LocalProtocolError": NotSent,
    "InvalidURL": NotSent,
    "ReadTimeout": MaybeSent,
    "WriteTimeout": MaybeSent,
    "ReadError": MaybeSent,
    "WriteError": MaybeSent,
    "CloseError": MaybeSent,
    "RemoteProtocolError": MaybeSent,
    "TimeoutException": MaybeSent,
    "NetworkError": MaybeSent,
    "ProtocolError": MaybeSent,
    "TransportError": MaybeSent,
    "RequestError": MaybeSent,
    "HTTPError": MaybeSent,
    "DecodingError": BadEnvelope,
    "TooManyRedirects": BadEnvelope,
    "HTTPStatusError": BadEnvelope,
    "StreamError": BadEnvelope,
    "StreamConsumed": BadEnvelope,
    "StreamClosed": BadEnvelope,
    "ResponseNotRead": BadEnvelope,
    "RequestNotRead": BadEnvelope,
    "CookieConflict": BadEnvelope,
}


def httpx_exception_classes() -> list[type[BaseException]]:
    return sorted(
        (
            value
            for value in vars(httpx).values()
            if inspect.isclass(value) and issubclass(value, BaseException)
        ),
        key=lambda cls: cls.__name__,
    )


def make(cls: type[BaseException]) -> BaseException:
    """An instance of any httpx exception, whatever its constructor wants."""
    request = httpx.Request("POST", "http://127.0.0.1/etims-api/saveItem")
    if cls is httpx.HTTPStatusError:
        return cls("boom", request=request, response=httpx.Response(500, request=request))
    if issubclass(cls, httpx.RequestError):
        return cls("boom", request=request)
    if cls in (httpx.StreamConsumed, httpx.StreamClosed, httpx.ResponseNotRead) or (
        cls is httpx.RequestNotRead
    ):
        return cls()
    return cls("boom")


def test_every_httpx_exception_is_handled_deliberately() -> None:
    exported = {cls.__name__ for cls in httpx_exception_classes()}
    assert exported == set(EXPECTED), "decide what new httpx exceptions mean, then list them"
    assert {cls.__name__ for cls in HANDLED} == exported


@pytest.mark.parametrize("cls", httpx_exception_classes(), ids=lambda cls: cls.__name__)
def test_each_httpx_exception_maps_to_its_leaf_chained(cls: type[BaseException]) -> None:
    original = make(cls)
    with pytest.raises(OscuError) as caught:
        with map_transport_errors():
            raise original
    assert type(caught.value) is EXPECTED[cls.__name__]
    assert caught.value.__cause__ is original
    assert cls.__name__ in str(caught.value)


def test_foreign_exceptions_pass_through_untouched() -> None:
    with pytest.raises(KeyError):
        with map_transport_errors():
            raise KeyError("ours")


def test_oscu_errors_pass_through_untouched() -> None:
    original = TokenRejected("no")
    with pytest.raises(TokenRejected) as caught:
        with map_transport_errors():
            raise original
    assert caught.value is original


def test_tree_shape() -> None:
    """The tree drawn in the module docstring."""
    assert issubclass(NotSent, OscuError)
    assert issubclass(MaybeSent, OscuError)
    assert issubclass(BadEnvelope, OscuError)
    assert issubclass(TokenError, NotSent)
    assert issubclass(TokenRejected, TokenError)
    assert not issubclass(MaybeSent, NotSent)
