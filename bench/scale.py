"""Scale (issue 6): throughput against branches x worker processes, and a lost worker host.

Matrix mode (default). For each cell (branches in 1, 8, 64, 512; worker processes in 1, 2, 4;
``--concurrency`` threads each; simulator latency 50 ms; PostgreSQL + Redis; fresh database,
Redis db and simulator per cell):

* devices are registered, the cell's jobs are enqueued with no worker running (NullWaker: the
  beat sweeper wakes the branches, as after any restart), then the workers start;
* figure = steady-state acceptance rate (10th..90th percentile of ``jobs.accepted_at``), as a
  ratio to the ideal ``min(branches, workers x concurrency) / latency``;
* a cell holds ``max(6 x branches, ideal x --seconds)`` jobs (6 = the smallest
  ``tests.workload`` branch: 2 items, opening stock, one sale + its two stock jobs), so each
  cell runs about ``--seconds`` at the ideal rate, longer at the real one.

Hosts mode (``--kill-host``): three worker processes with distinct Celery hostnames (h1 with
beat, h2, h3; each its own process group, a "host") drain 32 branches at 50 ms; ``--kill-at``
seconds after the first acceptance h2 is SIGKILLed with its process group. Then: every job
accepted (nothing lost), the simulator's ledger verifies and KRA saw each branch's jobs in
enqueue order (order holds), and the acceptance rate per ``--window`` seconds before and after
the kill shows the recovery (the dead host's leases expire after ETIMS_DRAIN__LEASE_TTL_S=8 s,
its unacked messages are not redelivered before Redis' visibility timeout, the beat sweeper
re-wakes the orphaned branches). ``--restart-at`` starts a replacement host later.

    python bench/scale.py                  # the full matrix
    python bench/scale.py --quick          # branches 1, 8, 64 x workers 1, 4, 5 s cells
    python bench/scale.py --kill-host      # three hosts, one killed mid-run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Stack,
    dump_json,
    enqueue_all,
    interleaved_batches,
    load_note,
    steady_rate,
    summary,
    windows,
)

MIN_JOBS_PER_BRANCH = 6


def cell(args: argparse.Namespace, branches: int, workers: int) -> dict[str, Any]:
    slots = workers * args.concurrency
    ideal = min(branches, slots) / (args.latency / 1000)
    jobs_per_branch = max(MIN_JOBS_PER_BRANCH, int(ideal * args.seconds / branches))
    with Stack(latency_ms=args.latency, loglevel=args.loglevel) as stack:
        stack.init_devices(branches)
        batches = interleaved_batches(branches, jobs_per_branch, 100)
        jobs, enqueue_s = enqueue_all(stack.engine, batches)
        load = load_note()
        started = time.time()
        stack.workers.start(workers, concurrency=args.concurrency)
        stack.wait_terminal(jobs, timeout=args.timeout)
        times = stack.accepted_times()
        counts = stack.counts()
        stack.workers.stop_all()
        ok = stack.verify().ok
    rate = steady_rate(times)
    return {
        "branches": branches,
        "workers": workers,
        "slots": slots,
        "jobs": jobs,
        "accepted": counts.get("accepted", 0),
        "ideal_per_s": ideal,
        "steady_per_s": rate,
        "ratio": rate / ideal,
        "first_accept_s": (times[0] - started) if times else None,
        "drain_s": (times[-1] - times[0]) if times else None,
        "ledger_ok": ok,
        "enqueue_per_s": jobs / enqueue_s,
        "load": load,
    }


def matrix(args: argparse.Namespace) -> int:
    branch_list = args.branches or ([1, 8, 64] if args.quick else [1, 8, 64, 512])
    worker_list = args.workers or ([1, 4] if args.quick else [1, 2, 4])
    results: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for b in branch_list:
            for w in worker_list:
                r = cell(args, b, w)
                r["rep"] = rep
                results.append(r)
                print(
                    f"branches {b:4d} workers {w}: {r['accepted']}/{r['jobs']} accepted, "
                    f"steady {r['steady_per_s']:6.1f}/s, ideal {r['ideal_per_s']:5.0f}/s, "
                    f"ratio {r['ratio']:.2f}; ledger {'OK' if r['ledger_ok'] else 'FAILED'}; "
                    f"{r['load']}",
                    flush=True,
                )
    dump_json(args.json, results)
    print(
        f"\nratio to ideal min(branches, workers x {args.concurrency}) / "
        f"{args.latency / 1000:g} s; median [min-max] over {args.reps} rep(s); "
        f"cells of ~{args.seconds:g} s at the ideal rate"
    )
    header = "branches | " + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in worker_list)
    print(header)
    for b in branch_list:
        row = []
        for w in worker_list:
            rs = [r for r in results if r["branches"] == b and r["workers"] == w]
            rate = summary([r["steady_per_s"] for r in rs]).split(" ")[0]
            row.append(f"{summary([r['ratio'] for r in rs])} ({rate}/s)")
        print(f"{b:8d} | " + " | ".join(row))
    ok = all(r["ledger_ok"] and r["accepted"] == r["jobs"] for r in results)
    print(f"all cells clean (every job accepted, ledger verifies): {ok}")
    return 0 if ok else 1


# --------------------------------------------------------------------------- lost host


def kill_host(args: argparse.Namespace) -> int:
    from tests.integration.test_pipeline_workers import acceptance_matches_enqueue_order

    branches = args.host_branches
    with Stack(latency_ms=args.latency, loglevel=args.loglevel) as stack:
        stack.init_devices(branches)
        batches = interleaved_batches(branches, args.host_jobs_per_branch, 100)
        jobs, _ = enqueue_all(stack.engine, batches)
        load = load_note()
        stack.workers.start(1, concurrency=args.concurrency, prefix="h", beat=True)
        stack.workers.start(2, concurrency=args.concurrency, prefix="h", beat=False)
        stack.workers.wait_ready()
        # the work is already there: the first sweep wakes every branch
        first = None
        while first is None:
            first = stack.accepted_times()[:1] or None
            time.sleep(0.1)
        t0 = first[0]
        victim = args.victim
        time.sleep(max(0.0, t0 + args.kill_at - time.time()))
        killed_at = time.time()
        stack.workers.kill(victim)
        print(f"killed {victim} (process group, SIGKILL) at t={killed_at - t0:.1f} s", flush=True)
        restarted_at = None
        if args.restart_at:
            time.sleep(max(0.0, t0 + args.restart_at - time.time()))
            stack.workers.start(1, concurrency=args.concurrency, prefix="h", beat=False)
            restarted_at = time.time()
            print(f"started replacement host at t={restarted_at - t0:.1f} s", flush=True)
        stack.wait_terminal(jobs, timeout=args.timeout)
        times = stack.accepted_times()
        counts = stack.counts()
        stack.workers.stop_all()
        report = stack.verify()
        try:
            acceptance_matches_enqueue_order(stack.relay, stack.simulator.ledger)
            in_order = True
        except AssertionError as exc:
            in_order = False
            print(f"order check failed: {str(exc)[:500]}", file=sys.stderr)
        duplicates = _signed_twice(stack)

    w = args.window
    rows = windows(times, t0, w)
    kill_rel = killed_at - t0
    slots_before = 3 * args.concurrency
    slots_after = 2 * args.concurrency
    ideal_before = min(branches, slots_before) / (args.latency / 1000)
    ideal_after = min(branches, slots_after) / (args.latency / 1000)
    print(
        f"\n3 hosts x {args.concurrency} threads, {branches} branches, {jobs} jobs, "
        f"latency {args.latency:g} ms; load: {load}"
    )
    print(
        f"accepted {counts.get('accepted', 0)}/{jobs} (nothing lost: "
        f"{counts.get('accepted', 0) == jobs}); ledger verifies: {report.ok}; "
        f"KRA order == enqueue order per branch: {in_order}; invcNo signed twice: {duplicates}"
    )
    print(
        f"acceptance rate per {w:g} s window (kill at t={kill_rel:.1f} s"
        + (f", replacement at t={restarted_at - t0:.1f} s" if restarted_at else "")
        + "):"
    )
    for start, n in rows:
        mark = ""
        if start <= kill_rel < start + w:
            mark = "  <- kill"
        elif restarted_at and start <= restarted_at - t0 < start + w:
            mark = "  <- replacement host"
        print(f"  t={start:5.1f}-{start + w:<5.1f}s {n / w:7.1f}/s{mark}")
    before = [n / w for s, n in rows if s + w <= kill_rel and s >= w]
    end = restarted_at - t0 if restarted_at else float("inf")
    full = [n / w for s, n in rows[:-1] if s >= kill_rel]
    back = 0.8 * median_or_nan(before)
    gap = next((s for s, n in rows if s >= kill_rel and n / w >= back), None)
    after_recovery = [n / w for s, n in rows[:-1] if s >= kill_rel + 10 and s + w <= end]
    print(
        f"before kill: {summary(before)}/s = {median_or_nan(before) / ideal_before:.2f} of "
        f"ideal {ideal_before:.0f}/s (3 hosts)"
    )
    print(
        f"from kill+10 s: {summary(after_recovery)}/s = "
        f"{median_or_nan(after_recovery) / ideal_after:.2f} of ideal "
        f"{ideal_after:.0f}/s (2 hosts)"
    )
    print(
        f"after the kill, all windows: {summary(full)}/s; first window back at >= 80% of "
        f"the pre-kill rate starts at t={gap}"
    )
    dump_json(
        args.json,
        {
            "times_rel": [t - t0 for t in times],
            "killed_at": kill_rel,
            "restarted_at": (restarted_at - t0) if restarted_at else None,
            "counts": counts,
            "ledger_ok": report.ok,
            "in_order": in_order,
        },
    )
    ok = report.ok and in_order and counts.get("accepted", 0) == jobs and duplicates == 0
    return 0 if ok else 1


def median_or_nan(values: list[float]) -> float:
    from _harness import median

    return median(values)


def _signed_twice(stack: Stack) -> int:
    """invcNo/sarNo held by more than one accepted job of a branch (must be 0)."""
    from sqlalchemy import text

    with stack.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM ("
                    "SELECT branch_id, invc_no FROM jobs WHERE invc_no IS NOT NULL "
                    "GROUP BY branch_id, invc_no HAVING count(*) > 1 "
                    "UNION ALL SELECT branch_id, sar_no FROM jobs WHERE sar_no IS NOT NULL "
                    "GROUP BY branch_id, sar_no HAVING count(*) > 1) d"
                )
            ).scalar_one()
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--branches", type=int, action="append")
    parser.add_argument("--workers", type=int, action="append")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=50.0)
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="cell length at the ideal rate (default 10, --quick 5)",
    )
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--kill-host", action="store_true")
    parser.add_argument("--host-branches", type=int, default=32)
    parser.add_argument("--host-jobs-per-branch", type=int, default=250)
    parser.add_argument("--victim", default="h2", help="h1 runs beat; h2 and h3 do not")
    parser.add_argument("--kill-at", type=float, default=15.0)
    parser.add_argument("--restart-at", type=float, default=None)
    parser.add_argument("--window", type=float, default=2.5)
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 10.0
    return kill_host(args) if args.kill_host else matrix(args)


if __name__ == "__main__":
    sys.exit(main())
