"""Per-process wiring: the engine, OSCU client, device directory and waker, built once.

Entry points (CLI commands, the Celery worker, the intake app) call :func:`build_runtime`
with the settings they loaded; Celery task bodies call :func:`current_runtime`, which builds
it lazily, once per process, from the environment.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.fernet import MultiFernet
from sqlalchemy import Engine

from schemas.settings import Settings, get_settings
from worker.devices import DeviceDirectory, load_fernet
from worker.drain import DrainContext
from worker.embedded_broker import resolve_broker_url
from worker.observe import DrainObserver, MetricsObserver
from worker.oscu.client import OscuClient
from worker.outbox.branch_store import BranchStore, branch_store
from worker.outbox.db import is_sqlite, make_engine
from worker.wake import CeleryWaker, NullWaker, Waker


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    broker_url: str
    devices: DeviceDirectory
    waker: Waker

    @cached_property
    def client(self) -> OscuClient:
        """The OSCU client, built on first use (a CLI command or the intake may never call)."""
        return OscuClient.from_settings(self.settings.oscu_url, self.settings.oscu)

    @cached_property
    def store(self) -> BranchStore:
        """The outbox's drain steps, built once per process: the PostgreSQL store compiles
        every statement when built (once per drain task, that was about 6% of a worker's
        interpreter time at 256 threads)."""
        return branch_store(self.engine)

    def drain_context(self, observer: DrainObserver | None = None) -> DrainContext:
        return DrainContext(
            store=self.store,
            client=self.client,
            devices=self.devices,
            settings=self.settings,
            observer=observer or MetricsObserver(),
            worker_name=socket.gethostname(),
        )

    def close(self) -> None:
        if "client" in self.__dict__:  # built (cached_property keeps it there)
            self.client.close()
        self.engine.dispose()


def state_dir_for(settings: Settings) -> Path:
    """Embedded state (broker socket, key file) lives beside the SQLite file by default."""
    if settings.state_dir != Path(".") or not is_sqlite(settings.database_url):
        return settings.state_dir.resolve()
    database = settings.database_url.split("///", 1)[-1]
    return (Path(database).resolve().parent / ".etims-relay") if database else Path(".").resolve()


def secrets_fernet(settings: Settings) -> MultiFernet:
    """The keys that encrypt stored secrets (devices' cmcKeys and webhook secrets): the first
    encrypts, any decrypts (rotation: :mod:`worker.secret_keys`).

    Every process must derive it the same way, or one could not read what another wrote.
    """
    return load_fernet(
        settings.secret_key, state_dir_for(settings), embedded=is_sqlite(settings.database_url)
    )


def broker_url_for(settings: Settings) -> str:
    """The broker URL: configured, or the embedded server's (started when not running)."""
    return resolve_broker_url(
        settings.broker_url, state_dir_for(settings), idle_s=settings.embedded_broker_idle_s
    )


def build_runtime(
    settings: Settings,
    *,
    need_broker: bool = True,
    pre_ping: bool = False,
    role: str = "cli",
) -> Runtime:
    """``pre_ping`` for user-facing processes (intake, CLI): see :func:`make_engine`.
    ``role`` names the process in PostgreSQL's ``application_name``."""
    engine = make_engine(
        settings.database_url, pool=settings.database, role=role, pre_ping=pre_ping
    )
    fernet = secrets_fernet(settings)
    broker_url = broker_url_for(settings) if need_broker else ""
    return Runtime(
        settings=settings,
        engine=engine,
        broker_url=broker_url,
        devices=DeviceDirectory(engine, fernet),
        waker=CeleryWaker.for_broker(broker_url) if broker_url else NullWaker(),
    )


_lock = threading.Lock()
_runtime: Runtime | None = None


def current_runtime() -> Runtime:
    """The process-wide runtime for Celery task bodies (built on first use)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(get_settings(), role="worker")
        return _runtime


def reset_runtime() -> None:
    """Forget the runtime (after fork: connections must not be shared with the parent)."""
    global _runtime
    with _lock:
        _runtime = None


def install_runtime(runtime: Runtime) -> None:
    """Use an already-built runtime for task bodies (the worker command builds one)."""
    global _runtime
    with _lock:
        _runtime = runtime
