"""The demo's processes: the simulator, the CLI steps, the Celery workers, the embedded broker.

Every child is started here and stopped here, in :meth:`Fleet.close`, whatever happened before
(a failed step, a timeout, Ctrl-C): workers first (SIGTERM, then SIGKILL), then the simulator,
then the embedded redis-server, which is daemonized and would otherwise outlive the demo.
Workers run in their own session, so a Ctrl-C in the terminal reaches only the demo, which
then shuts them down in order instead of leaving them to race.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from simulator.process import SimulatorProcess, simulator_command
from worker.embedded_broker import stop_embedded_redis

#: Settings for a short-lived demo: fail fast on a dead simulator, sweep often, back off
#: briefly. The lease must outlive twice a round trip (checked by Settings).
DEMO_SETTINGS = {
    "ETIMS_OSCU__CONNECT_TIMEOUT_S": "2",
    "ETIMS_OSCU__READ_TIMEOUT_S": "5",
    "ETIMS_DRAIN__LEASE_TTL_S": "30",
    "ETIMS_RETRY__CAP_S": "5",
    "ETIMS_SWEEP_INTERVAL_S": "1",
    "ETIMS_ACTOR": "demo",
}
#: How long a worker gets to finish its current drain after SIGTERM.
WORKER_STOP_TIMEOUT_S = 10.0


class StepFailed(RuntimeError):
    """A CLI step or a child process failed; the message says which and shows its output."""


@dataclass
class Fleet:
    """The working directory and the processes the demo runs in it."""

    workdir: Path
    simulator: SimulatorProcess | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.workdir / 'etims-relay.db'}"

    @property
    def state_dir(self) -> Path:
        return self.workdir / ".etims-relay"

    @property
    def ledger(self) -> Path:
        return self.workdir / "ledger.jsonl"

    @property
    def logs(self) -> Path:
        path = self.workdir / "logs"
        path.mkdir(exist_ok=True)
        return path

    def env(self) -> dict[str, str]:
        """The children's environment: the caller's, minus any ETIMS_* (the demo is hermetic)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETIMS_")}
        env.update(DEMO_SETTINGS)
        env.update(
            ETIMS_DATABASE_URL=self.database_url,
            ETIMS_BROKER_URL="",
            ETIMS_STATE_DIR=str(self.state_dir),
            ETIMS_OSCU_URL=self.simulator.url if self.simulator else "",
        )
        return env

    def start_simulator(self) -> str:
        self.simulator = SimulatorProcess(self.ledger, log_path=self.logs / "simulator.log")
        self.simulator.start()
        return self.simulator.url

    def run(self, *args: str, timeout: float = 120.0) -> str:
        """Run ``etims-relay ARGS`` to completion in the working directory; return its output."""
        try:
            done = subprocess.run(
                [*simulator_command(), *args],
                cwd=self.workdir,
                env=self.env(),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StepFailed(f"etims-relay {' '.join(args)} took over {timeout:.0f} s") from exc
        output = (done.stdout + done.stderr).decode(errors="replace").strip()
        if done.returncode != 0:
            raise StepFailed(
                f"etims-relay {' '.join(args)} exited {done.returncode}:\n{output[-3000:]}"
            )
        return output

    def start_workers(self, count: int, concurrency: int) -> None:
        """``count`` workers (threads pool); the first also runs beat (the sweeper)."""
        for index in range(count):
            args = ["worker", "-c", str(concurrency), "--hostname", f"demo-w{index}"]
            if index == 0:
                args.append("--beat")
            with (self.logs / f"worker-{index}.log").open("ab") as log:
                self.workers.append(
                    subprocess.Popen(
                        [*simulator_command(), *args],
                        cwd=self.workdir,
                        env=self.env(),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def check_workers(self) -> None:
        """Raise if a worker exited: the demo would otherwise wait for its timeout."""
        for index, proc in enumerate(self.workers):
            if proc.poll() is not None:
                tail = _tail(self.logs / f"worker-{index}.log")
                raise StepFailed(f"worker {index} exited with {proc.returncode}:\n{tail}")

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
        for proc in self.workers:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers.clear()

    def stop_simulator(self) -> None:
        if self.simulator is not None:
            self.simulator.stop()

    def close(self) -> None:
        """Stop everything, each step even if an earlier one fails."""
        try:
            self.stop_workers()
        finally:
            try:
                self.stop_simulator()
            finally:
                stop_embedded_redis(self.state_dir)


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"
