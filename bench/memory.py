"""Memory (issue 6): worker RSS at 10k and at 1M pending jobs; intake RSS under load.

Worker part, per backlog size (``--sizes``, default 10,000 and 1,000,000), on a fresh
PostgreSQL database: devices for ``--branches`` branches, a seed workload through
``producers.enqueue`` (items, opening stock, a sale with its stock jobs per branch), then the
backlog is made up to the size with one server-side ``INSERT ... SELECT generate_series``
copying a real sale's payload (pending sales with consecutive seq, no dependencies: what
``enqueue`` would have written, minus the hours it would take). The simulator answers every
call 503 (KRA down), so the backlog holds while one ``etims-relay worker --beat`` process
(``--concurrency`` threads) keeps retrying every branch's head and the sweeper keeps waking
them. Its RSS (the worker process and its children, from /proc via psutil) is sampled every
second for ``--seconds``; figure = median RSS at 1M / median RSS at 10k (flat = 1.0).

Intake part (``--intake``, on by default): ``etims-relay intake`` on a free port with an API key,
``--intake-clients`` threads POST ``/v1/jobs`` batches of 100 for ``--seconds``; RSS of the
intake process sampled every second (start, median, max, end) and the jobs/s it took.

    python bench/memory.py
    python bench/memory.py --sizes 10000 --sizes 100000 --seconds 30 --no-intake
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import psutil
from _harness import (
    ETIMS_RELAY,
    Stack,
    dump_json,
    enqueue_all,
    interleaved_batches,
    load_note,
)
from sqlalchemy import text


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of the process, RSS of it and all its descendants) in bytes."""
    proc = psutil.Process(pid)
    own = proc.memory_info().rss
    total = own
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return own, total


def bulk_fill(stack: Stack, size: int) -> float:
    """Top the jobs table up to ``size`` pending sales, spread over the branches."""
    started = time.perf_counter()
    with stack.engine.begin() as conn:
        have = int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())
        branches = int(conn.execute(text("SELECT count(*) FROM branches")).scalar_one())
        per_branch = max(0, -(-(size - have) // branches))
        conn.execute(
            text("""
            INSERT INTO jobs (branch_id, tin, bhf_id, seq, kind, idempotency_key, payload,
                              payload_hash, state, attempts, maybe_recorded, receipt_missing,
                              created_at, updated_at)
            SELECT b.id, b.tin, b.bhf_id, b.next_seq + g, 'sale',
                   b.bhf_id || ':bulk:' || g, t.payload, t.payload_hash, 'pending', 0,
                   false, false, extract(epoch from now()), extract(epoch from now())
            FROM branches b
            CROSS JOIN generate_series(0, :n - 1) AS g
            CROSS JOIN (SELECT payload, payload_hash FROM jobs WHERE kind = 'sale'
                        ORDER BY id LIMIT 1) t
        """),
            {"n": per_branch},
        )
        conn.execute(text("UPDATE branches SET next_seq = next_seq + :n"), {"n": per_branch})
    with stack.engine.connect() as conn:
        conn.execute(text("ANALYZE jobs"))
    return time.perf_counter() - started


def worker_rss(args: argparse.Namespace, size: int) -> dict[str, Any]:
    with Stack(latency_ms=0.0, loglevel=args.loglevel) as stack:
        stack.init_devices(args.branches)
        seed = interleaved_batches(args.branches, 6, 100)
        enqueue_all(stack.engine, seed)
        fill_s = bulk_fill(stack, size)
        pending = sum(stack.counts().values())
        stack.simulator.add_fault(kind="http_error", status=503)
        name = stack.workers.start(1, concurrency=args.concurrency)[0]
        stack.workers.wait_ready()
        pid = stack.workers.pids()[name]
        own, total = [], []
        deadline = time.time() + args.seconds
        while time.time() < deadline:
            o, t = tree_rss(pid)
            own.append(o)
            total.append(t)
            time.sleep(1.0)
        with stack.engine.connect() as conn:
            calls = int(conn.execute(text("SELECT count(*) FROM attempts")).scalar_one())
        still = sum(stack.counts().get(s, 0) for s in ("pending", "retry_wait", "in_flight"))
        load = load_note()
    return {
        "size": pending,
        "fill_s": fill_s,
        "held": still,
        "calls": calls,
        "rss_first_mb": own[0] / 2**20,
        "rss_median_mb": statistics.median(own) / 2**20,
        "rss_max_mb": max(own) / 2**20,
        "rss_last_mb": own[-1] / 2**20,
        "tree_median_mb": statistics.median(total) / 2**20,
        "tree_max_mb": max(total) / 2**20,
        "samples": len(own),
        "load": load,
    }


# --------------------------------------------------------------------------- intake


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def intake_rss(args: argparse.Namespace) -> dict[str, Any]:
    with Stack(
        latency_ms=50.0, loglevel=args.loglevel, env={"ETIMS_INTAKE__RATE_LIMIT": "1000000/minute"}
    ) as stack:
        created = stack.relay.cli("apikey", "create", "--tin", "P051234567A")
        key = created.stdout.strip().splitlines()[-1]
        port = free_port()
        log = open(stack.workdir / "intake.log", "wb")
        proc = subprocess.Popen(
            [ETIMS_RELAY, "intake", "--port", str(port), "--loglevel", "warning"],
            env=stack.relay.env(),
            cwd=stack.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            else:
                raise RuntimeError(
                    "intake did not come up: " + (stack.workdir / "intake.log").read_text()[-2000:]
                )
            batches = interleaved_batches(args.branches, 1000, 100)
            bodies = [json.dumps({"jobs": b}, default=str).encode() for b in batches]
            idle = tree_rss(proc.pid)[0]
            stop = time.time() + args.seconds
            sent = [0]
            errors: list[str] = []
            lock = threading.Lock()
            cursor = [0]

            def client() -> None:
                headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
                with httpx.Client(base_url=url, timeout=60) as http:
                    while time.time() < stop:
                        with lock:
                            if cursor[0] >= len(bodies):
                                return
                            body = bodies[cursor[0]]
                            cursor[0] += 1
                        r = http.post("/v1/jobs", content=body, headers=headers)
                        if r.status_code >= 300:
                            errors.append(f"{r.status_code} {r.text[:200]}")
                            return
                        with lock:
                            sent[0] += body.count(b'"idempotency_key"')

            threads = [threading.Thread(target=client) for _ in range(args.intake_clients)]
            started = time.time()
            for t in threads:
                t.start()
            samples = []
            while any(t.is_alive() for t in threads):
                samples.append(tree_rss(proc.pid)[0])
                time.sleep(1.0)
            elapsed = time.time() - started
            for t in threads:
                t.join()
            after = tree_rss(proc.pid)[0]
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
        load = load_note()
    return {
        "idle_mb": idle / 2**20,
        "median_mb": statistics.median(samples) / 2**20,
        "max_mb": max(samples) / 2**20,
        "after_mb": after / 2**20,
        "jobs": sent[0],
        "jobs_per_s": sent[0] / elapsed,
        "errors": errors[:3],
        "load": load,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, action="append")
    parser.add_argument("--branches", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--intake", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--intake-clients", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sizes = args.sizes or [10_000, 1_000_000]
    results: dict[str, Any] = {"worker": []}
    for size in sizes:
        r = worker_rss(args, size)
        results["worker"].append(r)
        print(
            f"{r['size']:>9,d} pending ({r['held']:,d} still held, {r['calls']:,d} calls "
            f"answered 503; bulk fill {r['fill_s']:.0f} s): worker RSS median "
            f"{r['rss_median_mb']:.1f} MB (first {r['rss_first_mb']:.1f}, max "
            f"{r['rss_max_mb']:.1f}, last {r['rss_last_mb']:.1f}); with children median "
            f"{r['tree_median_mb']:.1f} MB; {r['samples']} samples; {r['load']}",
            flush=True,
        )
    base = results["worker"][0]
    for r in results["worker"][1:]:
        print(
            f"RSS at {r['size']:,d} / RSS at {base['size']:,d}: "
            f"{r['rss_median_mb'] / base['rss_median_mb']:.3f} (median), "
            f"{r['rss_max_mb'] / base['rss_max_mb']:.3f} (max)"
        )
    if args.intake:
        try:
            i = intake_rss(args)
            results["intake"] = i
            print(
                f"intake under load: {i['jobs']:,d} jobs at {i['jobs_per_s']:.0f}/s from "
                f"{args.intake_clients} clients (batches of 100); RSS idle "
                f"{i['idle_mb']:.1f} MB, "
                f"median {i['median_mb']:.1f}, max {i['max_mb']:.1f}, after {i['after_mb']:.1f}; "
                f"errors {i['errors']}; {i['load']}"
            )
        except Exception as exc:
            print(f"intake part skipped: {type(exc).__name__}: {str(exc)[:500]}")
            results["intake"] = {"skipped": str(exc)}
    dump_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
