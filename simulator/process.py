"""Run ``etims-relay simulator`` as a child process, for end-to-end tests and the demo.

A real process is what chaos tests need: it can be SIGKILLed mid-request and restarted on
the same port and ledger, and it competes for CPU like KRA's network round trip would not.
The child prints one ``listening on http://...`` line once its port is bound; everything
else it says goes to a log file beside the ledger.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

READY_PATTERN = re.compile(r"listening on (http://\S+)")


def simulator_command() -> list[str]:
    """The console script next to this interpreter, else the same CLI through ``-c``."""
    script = Path(sys.executable).with_name("etims-relay")
    if script.exists():
        return [str(script)]
    found = shutil.which("etims-relay")
    if found:
        return [found]
    return [sys.executable, "-c", "from etims_relay.cli import main; main()"]


class SimulatorProcess:
    """``etims-relay simulator ...`` in a child process, restartable on the same port."""

    def __init__(
        self,
        ledger: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        vat_scheme: str | None = None,
        tax_rates: Mapping[str, Decimal | float | str] | None = None,
        tolerate_gaps: bool = False,
        approved_serials: Iterable[str] = (),
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        invoice_details: bool = True,
        seed: int | None = None,
        init_key_at_root: bool = False,
        flavour: str | None = None,
        stock_before_sale: bool = False,
        extra_args: Iterable[str] = (),
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.ledger = Path(ledger)
        self.host = host
        self.port = port
        self.log_path = Path(log_path) if log_path else self.ledger.with_suffix(".log")
        self.startup_timeout = startup_timeout
        args = ["--host", host, "--ledger", str(self.ledger)]
        if vat_scheme:
            args += ["--vat-scheme", vat_scheme]
        for code, rate in sorted((tax_rates or {}).items()):
            args += ["--tax-rate", f"{code}={rate}"]
        if tolerate_gaps:
            args.append("--tolerate-gaps")
        for serial in approved_serials:
            args += ["--approved-serial", serial]
        if latency_ms:
            args += ["--latency-ms", str(latency_ms)]
        if jitter_ms:
            args += ["--jitter-ms", str(jitter_ms)]
        if not invoice_details:
            args.append("--no-invoice-details")
        if seed is not None:
            args += ["--seed", str(seed)]
        if init_key_at_root:
            args.append("--init-key-at-root")
        if flavour:
            args += ["--flavour", flavour]
        if stock_before_sale:
            args.append("--stock-before-sale")
        self.args = args + list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> SimulatorProcess:
        """Launch and wait for the ready line; a restart keeps the first run's port."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("simulator process already running")
        cmd = [*simulator_command(), "simulator", "--port", str(self.port), *self.args]
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        self._await_ready()
        return self

    def _await_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        buffer = b""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            readable, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if not readable:
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            buffer += chunk
            found = READY_PATTERN.search(buffer.decode(errors="replace"))
            if found:
                self.port = int(found.group(1).rsplit(":", 1)[1])
                return
        self.kill()
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        raise RuntimeError(f"simulator did not become ready; log tail:\n{tail}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self._reap()

    def kill(self) -> int | None:
        """SIGKILL (a crash: no shutdown code runs); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self._reap()

    def _reap(self) -> int | None:
        assert self.proc is not None
        code = self.proc.returncode
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def restart(self, *, crash: bool = False) -> SimulatorProcess:
        """Stop (or SIGKILL with ``crash``) and start again on the same port and ledger."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()

    # -- admin over HTTP -----------------------------------------------------------------

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}/__admin/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def add_fault(self, **fields: Any) -> int:
        """POST /__admin/faults with ``fields`` (see simulator.faults); returns its id."""
        ids: list[int] = self._admin("POST", "faults", fields)["ids"]
        return ids[0]

    def clear_faults(self) -> int:
        cleared: int = self._admin("DELETE", "faults")["cleared"]
        return cleared

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._admin("GET", "stats")
        return stats

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
