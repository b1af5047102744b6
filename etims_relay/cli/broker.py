"""``etims-relay broker``: the embedded redis-server (only when ``ETIMS_BROKER_URL`` is empty).

It starts on first use and stops itself after ``ETIMS_EMBEDDED_BROKER_IDLE_S`` without
clients; these commands show it and stop it at once.
"""

from __future__ import annotations

import typer

from etims_relay.cli.common import console, fail, print_json, settings
from worker.embedded_broker import (
    broker_url_for_socket,
    embedded_redis_pid,
    socket_path_for,
    stop_embedded_redis,
)
from worker.runtime import broker_url_for, state_dir_for

app = typer.Typer(help="The embedded broker (ETIMS_BROKER_URL empty).", no_args_is_help=True)


def _embedded_only() -> None:
    if settings().broker_url.strip():
        raise fail("ETIMS_BROKER_URL is set: there is no embedded broker to manage")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Whether the embedded broker runs, its pid and its URL."""
    _embedded_only()
    directory = state_dir_for(settings())
    pid = embedded_redis_pid(directory)
    url = broker_url_for_socket(socket_path_for(directory))
    if as_json:
        print_json({"running": pid is not None, "pid": pid, "url": url})
    elif pid is None:
        console.print("embedded broker not running")
    else:
        console.print(f"embedded broker running, pid {pid}, {url}")


@app.command()
def start() -> None:
    """Start the embedded broker now (commands start it anyway when they need it)."""
    _embedded_only()
    console.print(f"embedded broker at {broker_url_for(settings())}")


@app.command()
def stop() -> None:
    """Stop the embedded broker now (its watchdog exits with it)."""
    _embedded_only()
    if stop_embedded_redis(state_dir_for(settings())):
        console.print("embedded broker stopped")
    else:
        console.print("embedded broker was not running")
