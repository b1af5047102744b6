"""Catch-up at KRA's real round trip, coalescing off vs on (issue 16).

Scenario, once per mode (``off``: ``ETIMS_COALESCE__STOCK_MASTER`` false; ``on``: stock
masters coalesced; ``merged``: stock masters coalesced and stock-outs merged,
``ETIMS_COALESCE__STOCK_IO`` true; all in the same run unless ``--modes`` says otherwise, each
on a fresh PostgreSQL database + Redis db + simulator), simulator latency
``--latency`` ms, one worker process with ``--concurrency`` threads (>= branches: every
branch in flight):

1. Before the outage: each of ``--branches`` branches registers ``--items`` items, takes an
   opening stock-in and reports one stock master per item (KRA knows the branch's stock).
2. The outage: no worker runs while ``--backlog`` sales per branch are enqueued, each of
   ``--lines`` lines on distinct items: the sale, its stock-out (type 11) after it, and one
   stock master per line after that (``producers.builders.sale_with_stock``).
3. KRA is back: the workers start (the clock starts) and new sales keep arriving at
   ``--arrival`` of the coalescing-off capacity, per branch (``1 / (r x (2 + lines))`` sales
   per second with ``r`` the round trip), until the backlog is drained.

Measured per mode: catch-up time (clock start to the first moment no job older than one
arrival period is still waiting, i.e. a new sale goes out before the next one arrives: the
backlog, and what arrived meanwhile, is gone), OSCU writes per sale while catching up (write
calls started in that window / sales accepted in it), and the ledger verdict (``simulator
verify``: order, numbers, every rsdQty equal to KRA's running balance) once everything has
drained.

The backlog is scaled down from "four hours of a busy branch": catch-up time scales with it
(T = S x r x w / (1 - lambda x r x w) for S backlog sales, w writes per sale and lambda
arrivals per second), writes per sale do not, as long as the backlog holds several sales per
item.

With ``--steady-rates``, the question is instead the highest steady sales rate per branch that
does not grow the backlog. Per mode, one stack: the branches are opened as in step 1 and the
worker keeps running; then, for each rate (a multiple of the formula's capacity
``1 / (r x w)``, with ``w = 2 + lines`` off, ``--coalesced-writes`` on and ``--merged-writes``
merged), ``--start-backlog``
sales per branch are enqueued at once and new sales arrive at that rate for ``--window``
seconds. The backlog (sales still waiting, per branch, and the age of the oldest waiting job)
is sampled every second; it *grows* when its mean over the window's last quarter exceeds its
mean over the first quarter by more than one sale per branch. Arrivals then stop and
everything drains before the next rate.

    python bench/coalesce.py --latency 300 --branches 16 --backlog 60
    python bench/coalesce.py --latency 1000 --branches 16 --backlog 60
    python bench/coalesce.py --latency 300 --branches 16 --steady-rates 0.8,1.0,1.2
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Stack, branch_keys, dump_json, enqueue_all, error_lines, load_note
from sqlalchemy import text

from producers import builders as b
from tests.workload import item_code

ACTIVE = "('pending','in_flight','retry_wait','unknown','merged')"
#: The catch-up's modes and the settings each runs with.
MODES: dict[str, dict[str, str]] = {
    "off": {"ETIMS_COALESCE__STOCK_MASTER": "false", "ETIMS_COALESCE__STOCK_IO": "false"},
    "on": {"ETIMS_COALESCE__STOCK_MASTER": "true", "ETIMS_COALESCE__STOCK_IO": "false"},
    "merged": {"ETIMS_COALESCE__STOCK_MASTER": "true", "ETIMS_COALESCE__STOCK_IO": "true"},
}


def opening(tin: str, bhf: str, items: int) -> list[dict[str, Any]]:
    """Items, an opening stock-in of each, and a stock master per item: the branch as it stood
    before the outage."""
    now = datetime.now(UTC)
    records = [
        b.item(
            tin,
            bhf,
            f"{bhf}:item:{n}",
            item_cd=item_code(n),
            item_nm=f"Item {n}",
            price=Decimal("116"),
        )
        for n in range(1, items + 1)
    ]
    lines = [
        b.SaleLine(item_code(n), f"Item {n}", Decimal(1_000_000), Decimal("116"))
        for n in range(1, items + 1)
    ]
    records.append(
        b.stock_io(
            tin,
            bhf,
            f"{bhf}:opening",
            lines,
            sar_ty_cd="06",
            at=now,
            depends_on=[r["idempotency_key"] for r in records],
        )
    )
    records += [
        b.stock_master(
            tin, bhf, f"{bhf}:opening:{n}", item_cd=item_code(n), depends_on=[f"{bhf}:opening"]
        )
        for n in range(1, items + 1)
    ]
    return records


class Sales:
    """Sales of one branch, numbered from 1, each with ``lines`` lines on distinct items."""

    def __init__(self, tin: str, bhf: str, items: int, lines: int, seed: int) -> None:
        self.tin, self.bhf, self.items, self.lines = tin, bhf, items, lines
        self.rng = random.Random(seed)
        self.count = 0

    def next(self) -> list[dict[str, Any]]:
        self.count += 1
        picked = self.rng.sample(range(1, self.items + 1), self.lines)
        lines = [
            b.SaleLine(item_code(n), f"Item {n}", Decimal(1 + self.rng.randrange(3)), Decimal(116))
            for n in picked
        ]
        return b.sale_with_stock(
            self.tin,
            self.bhf,
            f"{self.bhf}:sale:{self.count}",
            lines,
            trd_invc_no=f"{self.bhf}-T{self.count}",
            at=datetime.now(UTC),
        )


class Arrivals(threading.Thread):
    """New sales at a steady rate per branch while the backlog drains."""

    def __init__(self, stack: Stack, sales: list[Sales], per_branch_s: float) -> None:
        super().__init__(daemon=True)
        self.stack, self.sales, self.period = stack, sales, 1 / per_branch_s
        self.stopped = threading.Event()
        self.jobs, self.error = 0, None

    def run(self) -> None:
        try:
            due = time.time()
            while not self.stopped.is_set():
                records = [r for s in self.sales for r in s.next()]
                self.jobs += enqueue_all(self.stack.engine, [records], self.stack.waker)[0]
                due += self.period
                self.stopped.wait(max(0.0, due - time.time()))
        except BaseException as exc:
            self.error = exc


def run_mode(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    r = args.latency / 1000
    env = MODES[mode]
    keys = branch_keys(args.branches)
    with Stack(latency_ms=args.latency, loglevel=args.loglevel, env=env) as stack:
        # 1. before the outage
        primed = open_branches(stack, args, keys)
        stack.workers.stop_all()
        # 2. the outage: the backlog is enqueued while no worker runs
        sales = [Sales(t, bhf, args.items, args.lines, i) for i, (t, bhf) in enumerate(keys)]
        batches = [[r for _ in range(args.backlog) for r in s.next()] for s in sales]
        backlog, _ = enqueue_all(stack.engine, batches)
        # 3. KRA is back
        rate = args.arrival / (r * (2 + args.lines))
        load = load_note()
        start = time.time()
        stack.workers.start(1, concurrency=args.concurrency, prefix="c")
        arrivals = Arrivals(stack, sales, rate)
        arrivals.start()
        caught_up = wait_caught_up(stack, start, 1 / rate, args.timeout)
        arrivals.stopped.set()
        arrivals.join()
        if arrivals.error is not None:
            raise arrivals.error
        total = primed + backlog + arrivals.jobs
        stack.wait_terminal(total, timeout=args.timeout, interval=0.5)
        writes, sales_done = window_figures(stack, start, caught_up)
        counts = stack.counts()
        errors, first_errors = error_lines(stack.workers.logs)
        stack.workers.stop_all()
        report = stack.verify()
    return {
        "mode": mode,
        "coalesce": mode != "off",
        "backlog_jobs": backlog,
        "backlog_sales": args.backlog * args.branches,
        "arrived_jobs": arrivals.jobs,
        "arrival_sales_per_branch_s": rate,
        "catch_up_s": caught_up - start,
        "writes": writes,
        "sales": sales_done,
        "writes_per_sale": writes / max(1, sales_done),
        "capacity_sales_per_h": 3600 / (r * writes / max(1, sales_done)),
        "counts": counts,
        "ledger_ok": report.ok,
        "violations": report.violations[:5],
        "error_lines": errors,
        "first_errors": first_errors,
        "load": load,
    }


def open_branches(stack: Stack, args: argparse.Namespace, keys: list[tuple[str, str]]) -> int:
    """Devices, items, opening stock and a stock master per item, all accepted, with the
    worker left running; returns the number of jobs."""
    stack.init_devices(keys)
    before = [opening(tin, bhf, args.items) for tin, bhf in keys]
    jobs, _ = enqueue_all(stack.engine, before, stack.waker)
    stack.workers.start(1, concurrency=args.concurrency)
    stack.workers.wait_ready()
    stack.wait_terminal(jobs, timeout=args.timeout, interval=0.5)
    return jobs


def steady_mode(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """For each rate in ``--steady-rates``: does the backlog grow while sales arrive at it?"""
    r = args.latency / 1000
    w = {"off": 2 + args.lines, "on": args.coalesced_writes, "merged": args.merged_writes}[mode]
    env = MODES[mode]
    keys = branch_keys(args.branches)
    cells = []
    with Stack(latency_ms=args.latency, loglevel=args.loglevel, env=env) as stack:
        total = open_branches(stack, args, keys)
        sales = [Sales(t, bhf, args.items, args.lines, i) for i, (t, bhf) in enumerate(keys)]
        for share in args.steady_rates:
            rate = share / (r * w)
            sold = sum(s.count for s in sales)
            start_backlog = [
                [x for _ in range(args.start_backlog) for x in s.next()] for s in sales
            ]
            total += enqueue_all(stack.engine, start_backlog, stack.waker)[0]
            load = load_note()
            start = time.time()
            arrivals = Arrivals(stack, sales, rate)
            arrivals.start()
            samples = sample_backlog(stack, start + args.window)
            arrivals.stopped.set()
            arrivals.join()
            if arrivals.error is not None:
                raise arrivals.error
            arrived = sum(s.count for s in sales) - sold - args.start_backlog * len(sales)
            total += arrivals.jobs
            stack.wait_terminal(total, timeout=args.timeout, interval=0.5)
            writes, sales_done = window_figures(stack, start, start + args.window)
            cells.append(
                backlog_trend(samples, len(keys))
                | {
                    "share": share,
                    "sales_per_h": rate * 3600,
                    "arrived_per_h": arrived / len(keys) / args.window * 3600,
                    "writes_per_sale": writes / max(1, sales_done),
                    "load": load,
                }
            )
        errors, first_errors = error_lines(stack.workers.logs)
        stack.workers.stop_all()
        report = stack.verify()
    return {
        "mode": mode,
        "formula_w": w,
        "cells": cells,
        "ledger_ok": report.ok,
        "violations": report.violations[:5],
        "error_lines": errors,
        "first_errors": first_errors,
    }


def sample_backlog(stack: Stack, until: float) -> list[tuple[int, float]]:
    """(sales waiting, age of the oldest waiting job) every second until ``until``."""
    query = text(
        "SELECT count(*) FILTER (WHERE kind = 'sale'), min(created_at) "
        f"FROM jobs WHERE state IN {ACTIVE}"
    )
    samples = []
    while time.time() < until:
        with stack.engine.connect() as conn:
            waiting, oldest = conn.execute(query).one()
        now = time.time()
        samples.append((int(waiting), 0.0 if oldest is None else now - float(oldest)))
        time.sleep(max(0.0, 1.0 - (time.time() - now)))
    return samples


def backlog_trend(samples: list[tuple[int, float]], branches: int) -> dict[str, Any]:
    """The backlog over the window's first and last quarters; it grows when the last exceeds
    the first by more than one sale per branch."""
    quarter = max(1, len(samples) // 4)
    first, last = samples[:quarter], samples[-quarter:]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    sales_first = mean([n / branches for n, _ in first])
    sales_last = mean([n / branches for n, _ in last])
    return {
        "sales_waiting_first": sales_first,
        "sales_waiting_last": sales_last,
        "oldest_age_first": mean([age for _, age in first]),
        "oldest_age_last": mean([age for _, age in last]),
        "grows": sales_last > sales_first + 1,
    }


def wait_caught_up(stack: Stack, start: float, period: float, timeout: float) -> float:
    """When the backlog (jobs enqueued before ``start``) is sent and no active job is older
    than ``period`` (one arrival period) any more."""
    deadline = start + timeout
    query = text(f"SELECT min(created_at) FROM jobs WHERE state IN {ACTIVE}")
    while time.time() < deadline:
        with stack.engine.connect() as conn:
            oldest = conn.execute(query).scalar_one()
        now = time.time()
        if oldest is None or (float(oldest) >= start and now - float(oldest) < period):
            return now
        time.sleep(0.25)
    raise TimeoutError(f"backlog not drained after {timeout}s: {stack.counts()}")


def window_figures(stack: Stack, start: float, end: float) -> tuple[int, int]:
    """(OSCU write calls started, sales accepted) between ``start`` and ``end``."""
    with stack.engine.connect() as conn:
        writes = conn.execute(
            text("SELECT count(*) FROM attempts WHERE started_at >= :a AND started_at <= :b"),
            {"a": start, "b": end},
        ).scalar_one()
        sales = conn.execute(
            text(
                "SELECT count(*) FROM jobs WHERE kind = 'sale' AND state = 'accepted' "
                "AND accepted_at >= :a AND accepted_at <= :b"
            ),
            {"a": start, "b": end},
        ).scalar_one()
    return int(writes), int(sales)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency", type=float, default=1000.0, help="simulator latency, ms")
    parser.add_argument("--branches", type=int, default=16)
    parser.add_argument("--backlog", type=int, default=30, help="sales per branch")
    parser.add_argument("--items", type=int, default=12, help="items per branch")
    parser.add_argument("--lines", type=int, default=3, help="lines per sale")
    parser.add_argument(
        "--arrival", type=float, default=0.3, help="arrival rate, share of the off capacity"
    )
    parser.add_argument(
        "--steady-rates",
        type=lambda v: [float(x) for x in v.split(",")],
        default=None,
        help="instead of the catch-up: arrival rates, multiples of 1 / (r x w), e.g. 0.8,1.0,1.2",
    )
    parser.add_argument(
        "--coalesced-writes", type=float, default=2.2, help="w of the formula, coalescing on"
    )
    parser.add_argument(
        "--merged-writes", type=float, default=1.3, help="w of the formula, stock-outs merged"
    )
    parser.add_argument("--start-backlog", type=int, default=10, help="sales per branch")
    parser.add_argument("--window", type=float, default=60, help="seconds of arrivals per rate")
    parser.add_argument("--concurrency", type=int, default=0, help="default: branches")
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--modes",
        type=lambda v: v.split(","),
        default=list(MODES),
        help="modes, the first is the baseline: off,on,merged (catch-up and steady rates)",
    )
    args = parser.parse_args()
    args.concurrency = args.concurrency or args.branches
    if args.steady_rates:
        return steady_main(args)

    results = [run_mode(args, mode) for mode in args.modes]
    off = results[0]
    print(
        f"\ncoalescing {' vs '.join(args.modes)}: simulator {args.latency:g} ms, "
        f"{args.branches} branches, backlog {args.backlog} sales/branch of {args.lines} lines "
        f"over {args.items} items, new sales at "
        f"{off['arrival_sales_per_branch_s'] * 3600:.0f}/h per branch"
    )
    for res in results:
        print(
            f"  {res['mode']:6}: catch-up {res['catch_up_s']:.0f} s, "
            f"{res['writes_per_sale']:.2f} OSCU writes per sale ({res['writes']} writes, "
            f"{res['sales']} sales; 3600 / (r x w) = {res['capacity_sales_per_h']:.0f} sales/h "
            f"per branch), ledger verifies: {res['ledger_ok']}, states {res['counts']}"
        )
        print(f"       load at start: {res['load']}")
        print_errors(res)
    for res in results[1:]:
        speedup = off["catch_up_s"] / res["catch_up_s"]
        print(f"  catch-up {off['mode']} / {res['mode']} = {speedup:.2f}x")
    dump_json(args.json, {"args": vars(args) | {"json": None}, "results": results})
    ok = all(res["ledger_ok"] for res in results)
    return 0 if ok else 1


def steady_main(args: argparse.Namespace) -> int:
    results = [steady_mode(args, mode) for mode in args.modes]
    print(
        f"\nsteady sales rate per branch, coalescing {' vs '.join(args.modes)}: simulator "
        f"{args.latency:g} ms, "
        f"{args.branches} branches, {args.lines}-line sales over {args.items} items, "
        f"{args.start_backlog} sales per branch waiting at the start, {args.window:g} s windows"
    )
    for res in results:
        print(f"  {res['mode']} (formula w = {res['formula_w']:g}):")
        for c in res["cells"]:
            print(
                f"    {c['share']:.2f} x 3600 / (r x w) = {c['sales_per_h']:.0f} sales/h "
                f"(arrived {c['arrived_per_h']:.0f}/h): sales waiting per branch "
                f"{c['sales_waiting_first']:.1f} -> {c['sales_waiting_last']:.1f}, oldest job "
                f"{c['oldest_age_first']:.1f} -> {c['oldest_age_last']:.1f} s, "
                f"{c['writes_per_sale']:.2f} writes per sale: "
                f"{'GROWS' if c['grows'] else 'holds'}; {c['load']}"
            )
        best = highest_held(res["cells"])
        print(f"    highest rate that does not grow the backlog: {best}")
        print(f"    ledger verifies: {res['ledger_ok']}")
        print_errors(res)
    dump_json(args.json, {"args": vars(args) | {"json": None}, "results": results})
    return 0 if all(res["ledger_ok"] for res in results) else 1


def highest_held(cells: list[dict[str, Any]]) -> str:
    """The highest rate tried below the lowest one that grew the backlog."""
    held = "none of the rates tried"
    for c in sorted(cells, key=lambda c: c["share"]):
        if c["grows"]:
            break
        held = f"{c['sales_per_h']:.0f} sales/h per branch ({c['share']:g} x the formula)"
    return held


def print_errors(res: dict[str, Any]) -> None:
    print(f"       error lines in worker logs: {res['error_lines']}")
    for line in res["first_errors"]:
        print(f"         {line}")


if __name__ == "__main__":
    sys.exit(main())
