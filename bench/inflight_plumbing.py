"""Everything a worker with hundreds of threads meets, except the database (issue 16).

``bench/inflight.py`` measures the whole drain, where today the database pool caps the
branches in flight. This one takes the database out, to see whether anything else does: a
Celery worker with etims-relay's Celery configuration (threads pool, prefetch 1, late acks,
Redis broker) and ``--concurrency`` threads runs a task that makes one OSCU call through
``OscuClient`` (the ``stdlib`` engine, or ``--engine httpx``) to the simulator at
``--latency`` ms, then wakes its "branch" again through a ``CeleryWaker``, as a drain that
ends with more work does. ``--branches`` such chains run ``--calls`` calls each.

Ideal: ``min(branches, concurrency) / latency`` calls/s. Reported: the steady rate (10th..90th
percentile of completion times) and its ratio to the ideal, error lines in the worker's log,
and the worker's peak RSS, open files, threads and Redis clients (the bench's own completion
log takes at most 2 of them).

    python bench/inflight_plumbing.py                     # 256 chains, -c 256, 1,000 ms
    python bench/inflight_plumbing.py --engine httpx
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from celery import Celery  # noqa: E402

from schemas.settings import OscuSettings, Settings  # noqa: E402
from worker.celery_app import celery_config  # noqa: E402
from worker.oscu.client import OscuClient  # noqa: E402
from worker.wake import QUEUE, CeleryWaker  # noqa: E402

TASK = "bench.plumbing.call"
DONE_KEY = "bench:plumbing:done"
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


def _app() -> Celery:
    broker = os.environ.get("PLUMBING_BROKER", "memory://")
    settings = Settings(_env_file=None, broker_url=broker)  # type: ignore[call-arg]
    celery = Celery("plumbing", set_as_current=False)
    celery.conf.update(celery_config(settings, broker))
    celery.conf.beat_schedule = {}
    return celery


#: ``celery -A inflight_plumbing worker`` finds this.
app = _app()
_lock = threading.Lock()
_shared: dict[str, Any] = {}


def _parts() -> tuple[OscuClient, CeleryWaker, redis.Redis]:
    with _lock:
        if not _shared:
            broker = os.environ["PLUMBING_BROKER"]
            cap = os.environ.get("PLUMBING_MAX_CONNECTIONS")
            settings = OscuSettings(
                http_engine=os.environ.get("PLUMBING_ENGINE", "stdlib"),
                max_connections=int(cap) if cap else None,
            )
            threads = int(os.environ["PLUMBING_THREADS"])
            _shared["client"] = OscuClient.from_settings(
                os.environ["PLUMBING_OSCU"], settings, threads=threads
            )
            _shared["waker"] = CeleryWaker.for_broker(broker)
            # few connections, so that the Redis clients counted are the worker's own
            pool = redis.BlockingConnectionPool.from_url(broker, max_connections=2)
            _shared["redis"] = redis.Redis(connection_pool=pool)
        return _shared["client"], _shared["waker"], _shared["redis"]


@app.task(name=TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def call(branch: int, left: int) -> None:
    client, waker, store = _parts()
    outcome = client.call(
        "selectInitOsdcInfo",
        {"tin": "P051234567A", "bhfId": f"{branch % 100:02d}", "dvcSrlNo": f"S{branch}"},
        device=None,
        write=False,
    )
    store.rpush(DONE_KEY, f"{time.time()} {outcome.kind.value}")
    if left > 1:  # the branch has more: wake it again, as a drain that ends with "more" does
        waker._app.send_task(TASK, args=[branch, left - 1], queue=QUEUE)


def main() -> None:
    import psutil
    from _harness import REDIS_DB, REDIS_HOST, REDIS_PORT, load_note, steady_rate

    from simulator.process import SimulatorProcess

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--branches", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--calls", type=int, default=30, help="calls per branch")
    parser.add_argument("--latency", type=float, default=1000.0)
    parser.add_argument("--engine", choices=["stdlib", "httpx"], default="stdlib")
    parser.add_argument("--max-connections", type=int, default=None, help="httpx engine cap")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()

    broker = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    store = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    store.flushdb()
    workdir = Path(tempfile.mkdtemp(prefix="etims-plumbing-"))
    sim = SimulatorProcess(
        workdir / "ledger.jsonl", latency_ms=args.latency, log_path=workdir / "sim.log"
    ).start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ETIMS_")},
        "PLUMBING_BROKER": broker,
        "PLUMBING_OSCU": sim.url,
        "PLUMBING_ENGINE": args.engine,
        "PLUMBING_THREADS": str(args.concurrency),
        "PLUMBING_MAX_CONNECTIONS": str(args.max_connections or ""),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{Path(__file__).parent}",
    }
    log_path = workdir / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "inflight_plumbing",
                "worker",
                "--pool=threads",
                f"--concurrency={args.concurrency}",
                f"--queues={QUEUE}",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    peaks = {"rss_mb": 0.0, "fds": 0, "threads": 0, "redis_clients": 0}
    try:
        deadline = time.time() + 60
        while b" ready." not in log_path.read_bytes():
            if worker.poll() is not None or time.time() > deadline:
                raise RuntimeError(log_path.read_text()[-3000:])
            time.sleep(0.2)
        publisher = CeleryWaker.for_broker(broker)
        load = load_note()
        started = time.time()
        for branch in range(args.branches):
            publisher._app.send_task(TASK, args=[branch, args.calls], queue=QUEUE)
        expected = args.branches * args.calls
        proc = psutil.Process(worker.pid)
        while time.time() < started + args.timeout and store.llen(DONE_KEY) < expected:
            mem, fds, threads = proc.memory_info().rss / 2**20, proc.num_fds(), proc.num_threads()
            clients = sum(1 for c in store.client_list() if int(c.get("db", -1)) == REDIS_DB)
            peaks["rss_mb"] = max(peaks["rss_mb"], mem)
            peaks["fds"] = max(peaks["fds"], fds)
            peaks["threads"] = max(peaks["threads"], threads)
            peaks["redis_clients"] = max(peaks["redis_clients"], clients)
            time.sleep(0.5)
        done = [line.decode().split() for line in store.lrange(DONE_KEY, 0, -1)]
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        sim.stop()
        store.flushdb()
    times = sorted(float(t) for t, _ in done)
    kinds: dict[str, int] = {}
    for _, kind in done:
        kinds[kind] = kinds.get(kind, 0) + 1
    ideal = min(args.branches, args.concurrency) / (args.latency / 1000)
    rate = steady_rate(times)
    errors = [
        ln for ln in log_path.read_text(errors="replace").splitlines() if ERROR_LINE.search(ln)
    ]
    print(
        f"{args.branches} chains, celery threads -c {args.concurrency}, {args.latency:.0f} ms, "
        f"engine {args.engine}"
        + (f" (max {args.max_connections} connections)" if args.max_connections else "")
    )
    print(
        f"  steady {rate:.1f} calls/s of ideal {ideal:.0f} = ratio {rate / ideal:.2f}; "
        f"{len(done)}/{expected} calls done; outcomes {kinds}"
    )
    print(
        f"  peak RSS {peaks['rss_mb']:.0f} MB, open files {peaks['fds']}, threads "
        f"{peaks['threads']}, Redis clients {peaks['redis_clients']}"
    )
    print(f"  error lines in the worker's log: {len(errors)}")
    for line in errors[:5]:
        print(f"    {line[:240]}")
    print(f"  {load}")


if __name__ == "__main__":
    main()
