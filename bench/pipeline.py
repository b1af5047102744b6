"""Pipeline throughput (issue 3): 32 branches, PostgreSQL + Redis, real worker processes.

For each repetition and each simulator latency (default 50 ms and 0 ms), on a fresh PostgreSQL
database, flushed Redis db and fresh simulator:

1. devices are initialised for the 32 branches, ``--workers`` ``etims-relay worker``
   processes (threads pool, ``--concurrency`` each: 4 x 8 = 32 slots, every branch in flight)
   are started and waited for;
2. ``tests.workload`` jobs (items, opening stock, then sale + stock-out + stock master) are
   enqueued through ``producers.enqueue`` in batches of 100 (one branch per batch, branches
   taking turns) from a thread of this process, while the workers drain;
3. when every job is terminal, the figures are read from ``jobs.accepted_at``:
   *end-to-end* = jobs / (all terminal - enqueue start), *steady* = jobs accepted between the
   10th and 90th percentile of acceptance times / that span (no warm-up, no tail);
4. the ledger must verify and every job must be accepted;
5. baseline, with the workers stopped: a bare ``httpx.AsyncClient`` loop posts the very same
   bodies (read back from ``jobs.body``, tin swapped for a fresh one so KRA's numbering starts
   again) to the same simulator, 32 branches in parallel, each branch sequential.

Ratios: at 50 ms, pipeline / ideal (32 / 0.05 = 640 jobs/s; target >= 0.8); at 0 ms,
pipeline / bare loop (target >= 0.3). The bare loop is also reported at 50 ms (what a client
with no outbox at all reaches on this machine).

    python bench/pipeline.py                        # 3 repetitions, 50 ms and 0 ms
    python bench/pipeline.py --reps 1 --latency 50  # one quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _harness import (
    EnqueueThread,
    Stack,
    dump_json,
    interleaved_batches,
    load_note,
    median,
    steady_rate,
    summary,
)
from sqlalchemy import text

from schemas.jobs import JobKind

# --------------------------------------------------------------------------- bare loop


def bodies_by_branch(stack: Stack, new_tin: str) -> dict[str, list[tuple[str, bytes]]]:
    """The accepted bodies per branch in send order, re-addressed to ``new_tin``."""
    with stack.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT bhf_id, kind, body FROM jobs WHERE state = 'accepted' "
                "ORDER BY branch_id, seq"
            )
        ).all()
    out: dict[str, list[tuple[str, bytes]]] = {}
    for bhf, kind, body in rows:
        data = json.loads(body)
        data["tin"] = new_tin
        out.setdefault(bhf, []).append(
            (JobKind(kind).endpoint, json.dumps(data, separators=(",", ":")).encode())
        )
    return out


async def _bare(url: str, tin: str, work: dict[str, list[tuple[str, bytes]]]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=len(work) + 4, max_keepalive_connections=len(work) + 4)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        headers: dict[str, dict[str, str]] = {}
        for bhf in work:
            answer = (
                await client.post(
                    "/selectInitOsdcInfo",
                    json={"tin": tin, "bhfId": bhf, "dvcSrlNo": f"BARE-{tin}-{bhf}"},
                )
            ).json()
            key = answer["data"]["info"]["cmcKey"]
            headers[bhf] = {
                "tin": tin,
                "bhfId": bhf,
                "cmcKey": key,
                "Content-Type": "application/json",
            }
        errors = 0

        async def branch(bhf: str) -> None:
            nonlocal errors
            for endpoint, body in work[bhf]:
                response = await client.post(f"/{endpoint}", content=body, headers=headers[bhf])
                if b'"resultCd":"000"' not in response.content:
                    errors += 1
                    if errors <= 3:
                        print(
                            f"  bare loop: {endpoint} -> {response.content[:200]!r}",
                            file=sys.stderr,
                        )

        started = time.perf_counter()
        await asyncio.gather(*(branch(b) for b in work))
        seconds = time.perf_counter() - started
    sent = sum(len(v) for v in work.values())
    return {"jobs": sent, "seconds": seconds, "per_s": sent / seconds, "errors": errors}


def bare_loop(stack: Stack, rep: int) -> dict[str, Any]:
    tin = f"P{900000000 + rep:09d}B"
    work = bodies_by_branch(stack, tin)
    return asyncio.run(_bare(stack.simulator.url, tin, work))


# --------------------------------------------------------------------------- profile


def profile_drain(args: argparse.Namespace) -> int:
    """CPU cost of ``worker.drain.drain`` per job, without Celery, and where it goes.

    Enqueues ``--branches`` x ``--jobs-per-branch`` jobs, then drains every branch in a thread
    of this process (as the threads pool would, minus Celery) against PostgreSQL and the
    simulator. Prints process CPU ms per job, SQL statements and transactions per job by
    statement kind, and (``--cprofile``) the top of a cProfile by thread CPU time.
    """
    import collections
    import cProfile
    import io
    import pstats
    import re
    import threading

    from _harness import enqueue_all
    from sqlalchemy import event

    from worker.drain import drain
    from worker.runtime import build_runtime

    latency = (args.latency or [0.0])[0]
    with Stack(latency_ms=latency, env=_worker_env(args)) as stack:
        stack.init_devices(args.branches)
        jobs, _ = enqueue_all(
            stack.engine, interleaved_batches(args.branches, args.jobs_per_branch, args.batch)
        )
        runtime = build_runtime(stack.relay.settings(), need_broker=False)
        ctx = runtime.drain_context()
        if args.loglevel:  # as a worker logs (to a file nobody reads, as under systemd)
            from worker.logs import configure_logging

            configure_logging(args.loglevel, args.logformat, stream=open(os.devnull, "w"))
        kinds: collections.Counter[str] = collections.Counter()
        begins = [0]

        @event.listens_for(runtime.engine, "before_cursor_execute")
        def _count(conn: Any, cur: Any, stmt: str, params: Any, context: Any, many: Any) -> None:
            m = re.match(r"\s*(SELECT|UPDATE \w+|INSERT INTO \w+|DELETE FROM \w+|WITH)", stmt)
            key = m.group(1) if m else stmt.split()[0]
            if key == "SELECT":
                f = re.search(r"FROM (\w+)", stmt)
                key += f" {f.group(1) if f else '?'}" + (" JOIN" if " JOIN " in stmt else "")
            elif key == "WITH":  # the drain's fenced statements (sql/drain_postgresql.sql)
                key += " fence" + (" (branch UPDATE)" if "fence AS (\n    UPDATE" in stmt else "")
                key += ": job UPDATE" + (" + attempt" if "attempt AS" in stmt else "")
            kinds[key] += 1

        @event.listens_for(runtime.engine, "begin")
        def _begin(conn: Any) -> None:
            begins[0] += 1

        store_run = getattr(ctx.store, "_run", None)
        if store_run is not None:  # PostgreSQL: the per-job statements go to the driver

            def counted_run(name: str, params: Any) -> Any:
                kinds[f"driver: {name}"] += 1
                return store_run(name, params)

            ctx.store._run = counted_run  # type: ignore[attr-defined]

        with stack.engine.connect() as conn:
            ids = [int(r[0]) for r in conn.execute(text("SELECT id FROM branches ORDER BY id"))]
        profiles: list[cProfile.Profile] = []

        def run(branch_id: int) -> None:
            prof = cProfile.Profile(time.thread_time) if args.cprofile else None
            if prof:
                prof.enable()
            while True:
                report = drain(branch_id, ctx)
                if report.status in ("idle", "parked", "lease_lost"):
                    break
                if report.status == "waiting":
                    time.sleep(report.due_in_s or 0.05)
            if prof:
                prof.disable()
                profiles.append(prof)

        pg0 = stack.cpu_seconds()["postgres"]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        threads = [threading.Thread(target=run, args=(b,)) for b in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        pg_cpu = stack.cpu_seconds()["postgres"] - pg0
        counts = stack.counts()
        runtime.close()
        print(
            f"in-process drain, {args.branches} branches, latency {latency:g} ms: {jobs} jobs "
            f"{counts}, {jobs / wall:.0f} jobs/s, {cpu / jobs * 1000:.2f} ms CPU per job in the "
            f"drain process{' (under cProfile)' if args.cprofile else ''}, "
            f"{pg_cpu / jobs * 1000:.2f} ms in PostgreSQL; {load_note()}"
        )
        print(
            f"transactions per job {begins[0] / jobs:.2f}; SQL statements per job "
            f"{sum(kinds.values()) / jobs:.2f}:"
        )
        for key, n in kinds.most_common():
            print(f"  {n / jobs:5.2f}  {key}")
        if profiles:
            stats = pstats.Stats(profiles[0])
            for p in profiles[1:]:
                stats.add(p)
            out = io.StringIO()
            stats.stream = out  # type: ignore[attr-defined]
            stats.sort_stats("cumulative").print_stats(r"worker/|producers/|schemas/", 40)
            stats.sort_stats("tottime").print_stats(45)
            print(out.getvalue())
    return 0


# --------------------------------------------------------------------------- pipeline run


def _worker_env(args: argparse.Namespace) -> dict[str, str]:
    """``--no-coalesce``: every stock master sent, as a drain without coalescing (15e8d1c and
    before) sends them, so an A/B against it sends the same jobs."""
    return {"ETIMS_COALESCE__STOCK_MASTER": "false"} if args.no_coalesce else {}


def run_pipeline(args: argparse.Namespace, latency_ms: float, rep: int) -> dict[str, Any]:
    with Stack(
        latency_ms=latency_ms, env=_worker_env(args), loglevel=args.loglevel, keep=args.keep
    ) as stack:
        if args.keep:
            print(f"  keeping {stack.database_url} and {stack.workdir}", flush=True)
        stack.init_devices(args.branches)
        batches = interleaved_batches(args.branches, args.jobs_per_branch, args.batch)
        expected = sum(len(b) for b in batches)
        producer = EnqueueThread(stack.engine, batches, stack.waker)
        if args.prefill:  # a backlog already waiting (after an outage): drain only
            producer.run()
        stack.workers.start(args.workers, concurrency=args.concurrency)
        stack.workers.wait_ready()
        time.sleep(1.0)  # let beat's first sweep and the pools settle
        load_before = load_note()
        cpu_before = stack.cpu_seconds()
        started = time.time()
        if not args.prefill:  # producers enqueue while the workers drain
            producer.start()
            producer.join()
        if producer.error:
            raise producer.error
        done = stack.wait_terminal(expected, timeout=args.timeout)
        cpu_after = stack.cpu_seconds()
        counts = stack.counts()
        times = stack.accepted_times()
        stack.workers.stop_all()
        report = stack.verify()
        accepted = counts.get("accepted", 0)
        result: dict[str, Any] = {
            "latency_ms": latency_ms,
            "rep": rep,
            "jobs": expected,
            "accepted": accepted,
            "counts": counts,
            "enqueue_s": producer.seconds,
            "enqueue_per_s": producer.jobs / producer.seconds,
            "e2e_s": done - started,
            # the last acceptance, not the poll that saw it (polled once a second); with
            # --prefill the workers start draining before ``started``: count from the first
            "e2e_per_s": accepted / (times[-1] - (times[0] if args.prefill else started))
            if times
            else 0.0,
            "steady_per_s": steady_rate(times),
            "ledger_ok": report.ok,
            "violations": report.violations[:5],
            "load": load_before,
            # CPU ms per job by part (PostgreSQL: backends alive at the end, so a lower bound)
            "cpu_ms_per_job": {
                k: (cpu_after[k] - cpu_before.get(k, 0.0)) / expected * 1000 for k in cpu_after
            },
        }
        if accepted != expected or not report.ok:
            print(
                f"  !! run not clean: {counts}, ledger ok={report.ok} {report.violations[:3]}",
                file=sys.stderr,
            )
        if args.no_bare and latency_ms:  # the ratio at a latency is to the fixed ideal
            result["bare"] = {"per_s": float("nan"), "errors": 0}
        else:
            result["bare"] = bare_loop(stack, rep)
        result["load_after"] = load_note()
        return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--latency",
        type=float,
        action="append",
        help="simulator latency in ms (repeatable; default 50 and 0)",
    )
    parser.add_argument("--branches", type=int, default=32)
    parser.add_argument("--jobs-per-branch", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--prefill",
        action="store_true",
        help="enqueue everything before the workers start (drain a backlog) instead of "
        "concurrently with them",
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--logformat", default="text", choices=("text", "json"))
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", type=Path, default=None, help="write raw results here")
    parser.add_argument(
        "--profile-drain",
        action="store_true",
        help="no workers: CPU per job of drain() in-process, SQL per job",
    )
    parser.add_argument("--cprofile", action="store_true", help="with --profile-drain")
    parser.add_argument(
        "--no-bare",
        action="store_true",
        help="skip the bare loop where a latency is set (quicker A/B runs; 0 ms still needs it)",
    )
    parser.add_argument(
        "--no-coalesce",
        action="store_true",
        help="workers send every stock master (ETIMS_COALESCE__STOCK_MASTER=false): the same "
        "jobs as a drain without coalescing, for an A/B against one",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep each run's database and work dir (worker logs, ledger) to look into",
    )
    args = parser.parse_args()
    if args.profile_drain:
        return profile_drain(args)
    latencies = args.latency or [50.0, 0.0]
    ideal = {lat: (args.branches / (lat / 1000) if lat else None) for lat in latencies}

    results: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for lat in latencies:
            r = run_pipeline(args, lat, rep)
            results.append(r)
            base = ideal[lat] or r["bare"]["per_s"]
            print(
                f"rep {rep} latency {lat:g} ms: {r['accepted']}/{r['jobs']} accepted, "
                f"e2e {r['e2e_per_s']:.0f}/s, steady {r['steady_per_s']:.0f}/s, "
                f"enqueue {r['enqueue_per_s']:.0f}/s ({r['enqueue_s']:.1f} s); "
                f"bare loop {r['bare']['per_s']:.0f}/s ({r['bare']['errors']} errors); "
                f"steady/{'ideal' if ideal[lat] else 'bare'} {r['steady_per_s'] / base:.2f}; "
                f"ledger {'OK' if r['ledger_ok'] else 'FAILED'}; {r['load']}",
                flush=True,
            )
            cpu = r["cpu_ms_per_job"]
            print(
                "  CPU ms/job: "
                + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
                + f"; total {sum(cpu.values()):.2f}",
                flush=True,
            )
    dump_json(args.json, results)

    print(
        f"\n{args.branches} branches, {args.workers} workers x {args.concurrency} threads, "
        f"PostgreSQL + Redis, {results[0]['jobs']} jobs per run"
    )
    ok = all(r["ledger_ok"] and r["accepted"] == r["jobs"] for r in results)
    for lat in latencies:
        rs = [r for r in results if r["latency_ms"] == lat]
        if ideal[lat]:
            label, bases = f"ideal {ideal[lat]:.0f}/s", [ideal[lat]] * len(rs)
        else:
            label, bases = "bare httpx loop", [r["bare"]["per_s"] for r in rs]
        steady = [r["steady_per_s"] / b for r, b in zip(rs, bases, strict=True)]
        e2e = [r["e2e_per_s"] / b for r, b in zip(rs, bases, strict=True)]
        print(f"latency {lat:g} ms (vs {label}):")
        print(f"  steady ratio {summary(steady)}   e2e ratio {summary(e2e)}")
        print(
            f"  steady jobs/s {summary([r['steady_per_s'] for r in rs])}   "
            f"e2e jobs/s {summary([r['e2e_per_s'] for r in rs])}"
        )
        print(
            f"  bare loop jobs/s {summary([r['bare']['per_s'] for r in rs])}   "
            f"enqueue jobs/s (concurrent with drain) {summary([r['enqueue_per_s'] for r in rs])}"
        )
        target = 0.8 if ideal[lat] else 0.3
        parts = rs[0]["cpu_ms_per_job"].keys() if "cpu_ms_per_job" in rs[0] else []
        print(
            "  CPU ms per job (median): "
            + ", ".join(f"{k} {median([r['cpu_ms_per_job'][k] for r in rs]):.2f}" for k in parts)
        )
        print(f"  target >= {target}: {'met' if median(steady) >= target else 'NOT met'}")
    print(f"all runs clean (every job accepted, ledger verifies): {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
