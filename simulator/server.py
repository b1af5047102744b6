"""A lean HTTP/1.1 server for the simulator: ``asyncio.Protocol`` + ``httptools``, no framework.

Written by hand rather than on an ASGI server for two reasons: the fault modes need to close
a connection at a chosen moment without any answer (``drop``, ``lost_answer``), which ASGI
cannot express, and a framework-free hot path keeps the simulator far above the pipeline's
throughput on a shared 2-core machine (see bench/README.md).

Routing: ``POST /<path>`` for every OSCU endpoint at the root, where the path is the spec
name or, under ``--flavour gavaconnect``, GavaConnect's name for it (plus its token endpoint
and bearer check, :mod:`simulator.gateway`); ``/__admin/...`` for the control plane
(faults and counters); anything else HTTP 404. Requests on one connection are
answered in order; a request that must wait (latency fault) pauses that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools
import orjson

from simulator.admin import AdminApi
from simulator.clock import d14
from simulator.core import Simulator
from simulator.faults import FaultKind, FaultPlan
from simulator.gateway import TOKEN_PATH, UNAUTHORISED, Gateway, routes_for, wrap

log = logging.getLogger("simulator")

_REASONS = {
    200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
    405: b"Method Not Allowed", 413: b"Payload Too Large", 429: b"Too Many Requests",
    500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
    504: b"Gateway Timeout",
}  # fmt: skip
#: Fault actions that answer without processing the request.
_INSTEAD_OF_PROCESSING = frozenset({FaultKind.DROP, FaultKind.HTTP_ERROR, FaultKind.RESULT_CODE})
#: Refuse bodies above this size (the largest sale, 999 lines, is far smaller).
MAX_BODY = 8 * 1024 * 1024


def http_response(status: int, body: bytes, *, keep_alive: bool = True) -> bytes:
    """One complete HTTP/1.1 response with a JSON body."""
    reason = _REASONS.get(status, b"Status")
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        status,
        reason,
        len(body),
    )
    if not keep_alive:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    query: str = ""


class HttpProtocol(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, app: SimulatorApp) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[Request] = deque()
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.app.connections.discard(self)
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b'{"error": "upgrade not supported"}')
        except httptools.HttpParserError:
            self._fail(400, b'{"error": "malformed HTTP request"}')

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= MAX_BODY:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._size > MAX_BODY:
            self._fail(413, b'{"error": "request body too large"}')
            return
        path, _, query = self._url.decode("latin-1").partition("?")
        request = Request(
            query=query,
            method=self.parser.get_method().decode("latin-1"),
            path=path,
            headers=self._headers,
            body=b"".join(self._body),
            keep_alive=self.parser.should_keep_alive(),
        )
        self.pending.append(request)
        if self.task is None:
            self._drain()

    # -- answering -----------------------------------------------------------------------

    def _drain(self) -> None:
        """Answer queued requests; hand over to a task when one has to wait."""
        while self.pending and self.task is None and not self.closed:
            request = self.pending.popleft()
            plan = self.app.plan(request)
            if plan is not None and (plan.before_s or plan.after_s):
                self.task = asyncio.get_running_loop().create_task(self._slow(request, plan))
                return
            self._answer(request, plan)

    async def _slow(self, request: Request, plan: FaultPlan) -> None:
        try:
            if plan.before_s:
                await asyncio.sleep(plan.before_s)
            if self.closed:
                return
            response = self.app.respond(request, plan)
            if plan.after_s:
                await asyncio.sleep(plan.after_s)
            self._send(request, response)
        finally:
            self.task = None
        self._drain()

    def _answer(self, request: Request, plan: FaultPlan | None) -> None:
        self._send(request, self.app.respond(request, plan))

    def _send(self, request: Request, response: bytes | None) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        if response is None:  # drop / lost_answer: no answer at all
            self.closed = True
            transport.close()
            return
        transport.write(response)
        if not request.keep_alive:
            self.closed = True
            transport.close()

    def _fail(self, status: int, body: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(http_response(status, body, keep_alive=False))
            self.closed = True
            self.transport.close()


class SimulatorApp:
    """Routes requests to the core simulator or the admin API and renders answers."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.admin = AdminApi(simulator)
        self.endpoints = simulator.endpoints
        self.flavour = simulator.options.flavour
        #: URL path (no leading slash) -> spec endpoint name, for this run's flavour.
        self.routes = routes_for(self.flavour, self.endpoints)
        #: GavaConnect's OAuth layer; ``None`` on the etims-api flavour (no token needed).
        self.gateway = Gateway() if self.flavour == "gavaconnect" else None
        self.connections: set[HttpProtocol] = set()

    def plan(self, request: Request) -> FaultPlan | None:
        """Faults for an OSCU request; ``None`` for admin and unknown paths."""
        endpoint = self.routes.get(request.path[1:])
        if request.method != "POST" or endpoint is None:
            return None
        plan = self.simulator.faults.plan(endpoint)
        return None if plan.is_plain else plan

    def respond(self, request: Request, plan: FaultPlan | None) -> bytes | None:
        """The full response bytes, or ``None`` to close the connection without answering."""
        path = request.path
        if path.startswith("/__admin/"):
            status, payload = self.admin.handle(request.method, path, request.body)
            return http_response(status, orjson.dumps(payload), keep_alive=request.keep_alive)
        if self.gateway is not None and path == TOKEN_PATH:
            return self._token(request, self.gateway)
        endpoint = self.routes.get(path[1:])
        if endpoint is None:
            return http_response(404, b'{"error": "not found"}', keep_alive=request.keep_alive)
        if self.gateway is not None and not self.gateway.admits(
            request.headers.get("authorization")
        ):
            self.simulator.count(endpoint, "http_401")
            body = orjson.dumps(UNAUTHORISED)
            return http_response(401, body, keep_alive=request.keep_alive)
        if request.method != "POST":
            return self._envelope(request, "912", "Request method error: use POST", None)
        if plan is not None and plan.action in _INSTEAD_OF_PROCESSING:
            return self._fault_answer(request, plan)
        answer = self.simulator.process(endpoint, request.headers, request.body)
        if plan is not None and plan.action is FaultKind.LOST_ANSWER:
            self.simulator.events["lost_answers"] += 1
            return None
        return self._envelope(
            request,
            answer.result_cd,
            answer.message,
            answer.data,
            status=answer.http_status,
            root=answer.root,
            wrapped=self.gateway is not None and endpoint == "selectInitOsdcInfo",
        )

    @staticmethod
    def _token(request: Request, gateway: Gateway) -> bytes:
        """GavaConnect's token endpoint: GET only (a POST gets 200 and an empty body there)."""
        if request.method != "GET":
            return http_response(200, b"", keep_alive=request.keep_alive)
        if "grant_type=client_credentials" not in request.query.split("&"):
            body = orjson.dumps({"error": "unsupported_grant_type"})
            return http_response(400, body, keep_alive=request.keep_alive)
        status, payload = gateway.issue(request.headers.get("authorization"))
        return http_response(status, orjson.dumps(payload), keep_alive=request.keep_alive)

    def _fault_answer(self, request: Request, plan: FaultPlan) -> bytes | None:
        """The answer a fault gives instead of processing (``None``: close, no answer)."""
        events = self.simulator.events
        endpoint = self.routes.get(request.path[1:], request.path[1:])
        if plan.action is FaultKind.DROP:
            events["dropped"] += 1
            self.simulator.count(endpoint, "dropped")
            return None
        if plan.action is FaultKind.HTTP_ERROR:
            events["http_errors"] += 1
            self.simulator.count(endpoint, f"http_{plan.status}")
            body = orjson.dumps({"error": "injected fault", "status": plan.status})
            return http_response(plan.status, body, keep_alive=request.keep_alive)
        events["result_code_faults"] += 1
        self.simulator.count(endpoint, plan.code)
        message = plan.message or f"Injected result code {plan.code}"
        return self._envelope(request, plan.code, message, None)

    @staticmethod
    def _envelope(
        request: Request,
        code: str,
        message: str,
        data: Any,
        *,
        status: int = 200,
        root: dict[str, Any] | None = None,
        wrapped: bool = False,
    ) -> bytes:
        envelope = {"resultCd": code, "resultMsg": message, "resultDt": d14(), "data": data,
                    **(root or {})}  # fmt: skip
        body = orjson.dumps(wrap(envelope) if wrapped else envelope)
        return http_response(status, body, keep_alive=request.keep_alive)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (the faster loop), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def start_server(app: SimulatorApp, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` (0 picks a free port); the caller owns the returned server."""
    loop = asyncio.get_running_loop()
    factory: Callable[[], asyncio.Protocol] = lambda: HttpProtocol(app)  # noqa: E731
    return await loop.create_server(factory, host, port, backlog=4096, reuse_address=True)


def close_connections(app: SimulatorApp) -> None:
    """Close every open client connection (server shutdown)."""
    for connection in list(app.connections):
        if connection.transport is not None:
            with contextlib.suppress(Exception):
                connection.transport.close()
