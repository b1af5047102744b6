"""After a KRA outage, branches that backed off are used again within seconds, not minutes.

Three branches hit the same outage. One branch's head had backed off to the five-minute cap,
another waits on a rate limit (990). When the first branch's retried sale is accepted, the
capped branch is due again within ``retry.recovery_spread_s``; the rate-limited one keeps the
wait KRA asked for. Both stores, real simulator.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import update

from producers import builders as b
from schemas.settings import DrainSettings, RetrySettings
from tests.workload import TIN, item_code
from worker.drain import DrainContext, drain
from worker.outbox import queries as q
from worker.outbox.models import branches, jobs

NOW = datetime.now(UTC)
WATER = b.SaleLine(item_code(1), "Water", Decimal("1"), Decimal("116"))
CAP_S = 300.0
SPREAD_S = 1.0


def stock(bhf: str) -> list[dict[str, Any]]:
    return [
        b.item(TIN, bhf, f"item-{bhf}", item_cd=item_code(1), item_nm="Water", price=Decimal("116"))
    ]


def due_at(p: Any, key: str, bhf: str, later: float) -> None:
    """Make job ``key`` (and its branch) due at ``later``."""
    with p.runtime.engine.begin() as conn:
        conn.execute(
            update(jobs).where(jobs.c.idempotency_key == key).values(next_attempt_at=later)
        )
        conn.execute(update(branches).where(branches.c.bhf_id == bhf).values(wake_after=later))


def test_the_first_success_after_an_outage_pulls_other_branches_forward(
    pipeline_factory: Any,
) -> None:
    p = pipeline_factory(branches=("00", "01", "02"))
    for bhf in ("00", "01", "02"):
        p.enqueue(stock(bhf))
        p.drain(bhf)
    ctx: DrainContext = p.runtime.drain_context()
    settings = ctx.settings.model_copy(
        update={
            "drain": DrainSettings(max_jobs=50, max_seconds=5, inline_wait_s=0.0, lease_ttl_s=5),
            # first retries wait up to 5 s (full jitter), longer than any inline wait
            "retry": RetrySettings(base_s=5, cap_s=10, recovery_spread_s=SPREAD_S),
        }
    )
    ctx = dataclasses.replace(ctx, settings=settings)

    def branch_id(bhf: str) -> int:
        return int(p.branch(bhf).id)

    # Given branch 02's sale was answered 990 (KRA asks us to slow down) ...
    p.sim.add_fault(endpoint="saveTrnsSalesOsdc", kind="result_code", code="990", times=1)
    p.enqueue([b.sale(TIN, "02", "s-02", [WATER], trd_invc_no="T02", at=NOW)])
    assert drain(branch_id("02"), ctx).status == "waiting"
    # ... and KRA went down (503) for the sales of branches 00 and 01
    p.sim.add_fault(endpoint="saveTrnsSalesOsdc", kind="http_error", status=503, times=2)
    p.enqueue([b.sale(TIN, "00", "s-00", [WATER], trd_invc_no="T00", at=NOW)])
    p.enqueue([b.sale(TIN, "01", "s-01", [WATER], trd_invc_no="T01", at=NOW)])
    assert drain(branch_id("00"), ctx).status == "waiting"
    assert drain(branch_id("01"), ctx).status == "waiting"
    assert {p.job(k).state for k in ("s-00", "s-01", "s-02")} == {"retry_wait"}
    # ... and after a long outage the heads of 01 and 02 backed off to the cap
    due_at(p, "s-01", "01", time.time() + CAP_S)
    due_at(p, "s-02", "02", time.time() + CAP_S)

    # When KRA is back and branch 00's retried sale, due now, is accepted
    due_at(p, "s-00", "00", time.time())
    recovered_at = time.time()
    drain(branch_id("00"), ctx)
    assert p.job("s-00").state == "accepted"

    # Then branch 01 is due within the spread, not in five minutes ...
    assert p.job("s-01").next_attempt_at <= recovered_at + SPREAD_S + 0.5
    # ... the sweeper finds it due within seconds, and its sale is accepted
    accepted_at = None
    while time.time() < recovered_at + 10:
        with p.runtime.engine.connect() as conn:
            due = q.due_branches(conn, time.time(), 10)
        if branch_id("01") in due:
            drain(branch_id("01"), ctx)
            if p.job("s-01").state == "accepted":
                accepted_at = time.time()
                break
        time.sleep(0.05)
    assert accepted_at is not None, "branch 01 still waiting 10 s after KRA came back"
    assert accepted_at - recovered_at < SPREAD_S + 2.0
    # ... while the rate-limited branch keeps the wait KRA asked for
    assert p.job("s-02").state == "retry_wait"
    assert p.job("s-02").next_attempt_at > time.time() + CAP_S / 2
