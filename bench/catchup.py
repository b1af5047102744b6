"""Catch-up after a KRA outage (issue 6): time to drain a backlog vs the runbook formula.

Scenario (PostgreSQL + Redis, simulator latency ``--latency`` ms, ``--workers`` x
``--concurrency`` worker threads):

* ``--outage 503`` (default): the workers are running, the simulator answers every OSCU call
  with HTTP 503 (``add_fault(kind="http_error", status=503)``) while ``--jobs`` jobs over
  ``--branches`` branches are enqueued (each branch's head goes ``retry_wait`` with capped
  backoff); then the fault is cleared: KRA is back. The clock starts at the clear.
* ``--outage stopped``: the jobs are enqueued while no worker runs; the clock starts when the
  workers are started.

Measured: time from the clock start to the last acceptance (every job must end accepted, the
ledger must verify). Predicted (the runbook formula): ``T = backlog x r / min(B, W)`` with
``B`` active branches, ``r`` KRA's round trip (the simulator latency) and ``W`` = workers x
concurrency. The ratio predicted / measured says how far the formula is from this machine;
``r_eff = T_measured x min(B, W) / backlog`` is the per-job time the formula would need.

    python bench/catchup.py                       # 50,000 jobs, 64 branches, 503 outage
    python bench/catchup.py --jobs 5000 --outage stopped
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Stack,
    dump_json,
    enqueue_all,
    interleaved_batches,
    load_note,
    steady_rate,
    windows,
)
from sqlalchemy import text


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--branches", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=50.0)
    parser.add_argument("--outage", choices=["503", "stopped"], default="503")
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--max-attempts", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    # branch_workload(n) yields 3 + 3k jobs: round up so the backlog is >= --jobs
    per_branch = -(-args.jobs // args.branches)
    per_branch += (-(per_branch - 3)) % 3
    r = args.latency / 1000
    slots = args.workers * args.concurrency
    # A long outage must not exhaust a head's attempts (it would go dead or park the branch:
    # see bench/README.md); the bench's backoff cap is 1 s (production: 300 s).
    env = {"ETIMS_RETRY__MAX_ATTEMPTS": str(args.max_attempts)}
    with Stack(latency_ms=args.latency, loglevel=args.loglevel, env=env) as stack:
        stack.init_devices(args.branches)
        batches = interleaved_batches(args.branches, per_branch, 500)
        if args.outage == "503":
            stack.simulator.add_fault(kind="http_error", status=503)
            stack.workers.start(args.workers, concurrency=args.concurrency)
            stack.workers.wait_ready()
        jobs, enqueue_s = enqueue_all(stack.engine, batches, stack.waker)
        print(
            f"backlog: {jobs} jobs over {args.branches} branches, enqueued in "
            f"{enqueue_s:.0f} s ({jobs / enqueue_s:.0f}/s) during the outage",
            flush=True,
        )
        if args.outage == "503":
            time.sleep(3)  # every head has failed at least once and waits in retry_wait
            before = stack.counts()
            load = load_note()
            start = time.time()
            stack.simulator.clear_faults()
        else:
            before = stack.counts()
            load = load_note()
            start = time.time()
            stack.workers.start(args.workers, concurrency=args.concurrency)
        print(f"KRA back at {time.strftime('%H:%M:%S')}; states then: {before}", flush=True)
        stack.wait_terminal(jobs, timeout=args.timeout, interval=1.0)
        times = stack.accepted_times()
        counts = stack.counts()
        with stack.engine.connect() as conn:
            failed_calls = int(
                conn.execute(
                    text("SELECT count(*) FROM attempts WHERE outcome <> 'accepted'")
                ).scalar_one()
            )
            mean_latency = float(
                conn.execute(
                    text("SELECT avg(latency_s) FROM attempts WHERE outcome = 'accepted'")
                ).scalar_one()
            )
        stack.workers.stop_all()
        ok = stack.verify().ok
    measured = times[-1] - start
    active = min(args.branches, slots)
    predicted = jobs * r / active
    first = times[0] - start
    print(
        f"\ncatch-up: {jobs} jobs, {args.branches} branches, {args.workers} workers x "
        f"{args.concurrency} threads (W={slots}), r={r * 1000:g} ms, outage={args.outage}"
    )
    print(
        f"accepted {counts.get('accepted', 0)}/{jobs}; ledger verifies: {ok}; "
        f"failed calls during the outage: {failed_calls}"
    )
    print(
        f"measured T = {measured:.0f} s (first acceptance after {first:.1f} s; steady "
        f"{steady_rate(times):.0f} jobs/s)"
    )
    print(f"predicted T = backlog x r / min(B, W) = {jobs} x {r:g} / {active} = {predicted:.0f} s")
    print(
        f"predicted / measured = {predicted / measured:.2f}; r_eff = T x min(B,W) / backlog = "
        f"{measured * active / jobs * 1000:.0f} ms per job per slot (mean OSCU call "
        f"{mean_latency * 1000:.0f} ms as the client saw it)"
    )
    print(f"load at start: {load}; after: {load_note()}")
    rate = windows(times, start, 30.0)
    print("acceptance rate per 30 s: " + ", ".join(f"{n / 30:.0f}" for _, n in rate))
    dump_json(
        args.json,
        {
            "jobs": jobs,
            "measured_s": measured,
            "predicted_s": predicted,
            "first_s": first,
            "counts": counts,
            "ledger_ok": ok,
        },
    )
    return 0 if ok and counts.get("accepted", 0) == jobs else 1


if __name__ == "__main__":
    sys.exit(main())
