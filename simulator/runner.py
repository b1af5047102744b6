"""Run the simulator: in the foreground (the CLI), or on a background thread (tests).

Both paths build the same :class:`~simulator.core.Simulator` and serve it with
:mod:`simulator.server` on its own event loop, so an in-process test sees exactly
the behaviour a subprocess would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.core import Simulator
from simulator.faults import Fault, FaultRegistry
from simulator.options import SimulatorOptions
from simulator.server import SimulatorApp, close_connections, new_event_loop, start_server
from simulator.state import SimulatorState


async def _serve(
    simulator: Simulator,
    host: str,
    port: int,
    stop: asyncio.Event,
    on_ready: Callable[[int], None],
) -> None:
    app = SimulatorApp(simulator)
    server = await start_server(app, host, port)
    try:
        sockets = server.sockets or ()
        on_ready(int(sockets[0].getsockname()[1]))
        await stop.wait()
    finally:
        server.close()
        close_connections(app)
        await server.wait_closed()
        simulator.close()


def serve(
    ledger_path: str | os.PathLike[str],
    options: SimulatorOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (the ``etims-relay simulator`` foreground process)."""
    simulator = Simulator(ledger_path, options)
    loop = new_event_loop()
    stop = asyncio.Event()
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        loop.run_until_complete(_serve(simulator, host, port, stop, on_ready or (lambda _: None)))
    finally:
        loop.close()


@dataclass
class SimulatorHandle:
    """A simulator running on a background thread of this process."""

    url: str
    host: str
    port: int
    ledger_path: Path
    simulator: Simulator
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _stop: asyncio.Event = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def faults(self) -> FaultRegistry:
        """Add/clear faults directly (``handle.faults.add(kind="drop", times=1)``)."""
        return self.simulator.faults

    @property
    def state(self) -> SimulatorState:
        """KRA's memory: devices, branches, counters. Read it between requests."""
        return self.simulator.state

    @property
    def options(self) -> SimulatorOptions:
        return self.simulator.options

    def add_fault(self, **fields: Any) -> int:
        return self.simulator.faults.add(Fault(**fields))

    def stats(self) -> dict[str, Any]:
        """The ``/__admin/stats`` counters, read on the server's own thread."""

        async def read() -> dict[str, Any]:
            return self.simulator.stats()

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(timeout=10)

    def stop(self) -> None:
        """Close the listener and every connection, close the ledger, join the thread."""
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)


def start_simulator(
    ledger_path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> SimulatorHandle:
    """Start on a background thread and return once the port is bound (see run_simulator)."""
    opts = options.pop("options", None) or SimulatorOptions(**options)
    simulator = Simulator(ledger_path, opts)
    loop = new_event_loop()
    ready = threading.Event()
    bound: list[int] = []
    failure: list[BaseException] = []
    stop_box: list[asyncio.Event] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        stop_box.append(stop)

        def on_ready(port_: int) -> None:
            bound.append(port_)
            ready.set()

        try:
            loop.run_until_complete(_serve(simulator, host, port, stop, on_ready))
        except BaseException as exc:  # reported to the starting thread
            failure.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="oscu-simulator", daemon=True)
    thread.start()
    if not ready.wait(timeout=10) or failure:
        raise RuntimeError(f"simulator did not start: {failure[0] if failure else 'timeout'}")
    return SimulatorHandle(
        url=f"http://{host}:{bound[0]}",
        host=host,
        port=bound[0],
        ledger_path=Path(ledger_path),
        simulator=simulator,
        _loop=loop,
        _stop=stop_box[0],
        _thread=thread,
    )


@contextlib.contextmanager
def run_simulator(ledger_path: str | os.PathLike[str], **options: Any) -> Iterator[SimulatorHandle]:
    """Serve a simulator on a free 127.0.0.1 port for the ``with`` block.

    ``options`` are :class:`SimulatorOptions` fields (``vat_scheme="split"``,
    ``tolerate_gaps=True``, ``approved_serials=frozenset({...})``, ``latency_ms=5``...),
    plus ``host``/``port``. The ledger is reloaded if it exists, so two consecutive blocks on
    one path behave like a restarted KRA.
    """
    handle = start_simulator(ledger_path, **options)
    try:
        yield handle
    finally:
        handle.stop()
