"""A number that may be at KRA is never handed to another job (README invariant 2).

Each story scripts the simulator over its admin endpoint (``POST /__admin/faults``), drains,
and ends with what KRA recorded: the ledger verifies (numbers without gap or repeat, no
trader invoice signed twice) and the next sale takes the right number. Both stores.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from typer.testing import CliRunner

from etims_relay.cli import app
from producers import builders as b
from schemas.settings import get_settings
from simulator.verify import verify_ledger
from tests.helpers import ledger_writes
from tests.integration.pipeline_fixtures import Pipeline
from tests.workload import TIN, item_code
from worker.drain import drain
from worker.outbox import queries as q
from worker.replay import Actor, OperatorError, set_next, skip, unpark

NOW = datetime.now(UTC)
WATER = b.SaleLine(item_code(1), "Water", Decimal("1"), Decimal("116"))
OPS = Actor("test-operator")
SALE = "saveTrnsSalesOsdc"


def registered_stock(bhf: str = "00") -> list[dict[str, Any]]:
    return [
        b.item(TIN, bhf, f"item-1@{bhf}", item_cd=item_code(1), item_nm="Water", price=WATER.prc),
        b.stock_io(
            TIN, bhf, f"opening@{bhf}",
            [b.SaleLine(item_code(1), "Water", Decimal("50"), Decimal("116"))],
            sar_ty_cd="06", at=NOW, depends_on=[f"item-1@{bhf}"],
        ),
    ]  # fmt: skip


def sale(key: str, trd: str, bhf: str = "00") -> dict[str, Any]:
    return b.sale(TIN, bhf, key, [WATER], trd_invc_no=trd, at=NOW)


def script(p: Pipeline, *faults: dict[str, Any]) -> None:
    """Install faults, in order, through the simulator's admin HTTP endpoint."""
    answer = httpx.post(f"{p.sim.url}/__admin/faults", json=list(faults), timeout=5)
    answer.raise_for_status()


def signed(p: Pipeline, bhf: str = "00") -> list[tuple[int, str]]:
    """(invcNo, trdInvcNo) of every sale KRA accepted on the branch, in order."""
    return [
        (w["body"]["invcNo"], w["body"]["trdInvcNo"])
        for w in ledger_writes(p.sim.ledger_path, [SALE])
        if w["bhfId"] == bhf
    ]


def assert_kra_is_consistent(p: Pipeline) -> None:
    report = verify_ledger(p.sim.ledger_path)
    assert report.ok, report.violations
    trader = [w["body"]["trdInvcNo"] for w in ledger_writes(p.sim.ledger_path, [SALE])]
    assert len(trader) == len(set(trader)), trader


def ready(p: Pipeline) -> None:
    p.enqueue(registered_stock())
    p.drain()


# --------------------------------------------------------------- lost answer, then a refusal


def lost_then(code: str, message: str) -> list[dict[str, Any]]:
    return [
        {"endpoint": SALE, "kind": "lost_answer", "times": 1},
        {"endpoint": SALE, "kind": "result_code", "code": code, "message": message, "times": 1},
    ]


def test_lost_answer_then_910_on_the_resend_is_accepted_with_kras_receipt(
    pipeline: Pipeline,
) -> None:
    # Given KRA records the first send of s1 but the answer is lost, and the resend gets 910
    ready(pipeline)
    script(pipeline, *lost_then("910", "Request parameter error"))
    pipeline.enqueue([sale("s1", "T1"), sale("s2", "T2")])

    # When the branch drains
    pipeline.drain()

    # Then KRA's lookup showed our sale under invcNo 1: accepted, with KRA's own signature
    job = pipeline.job("s1")
    assert job.state == "accepted" and job.invc_no == 1
    recorded = ledger_writes(pipeline.sim.ledger_path, [SALE])[0]["data"]
    assert json.loads(job.receipt)["rcptSign"] == recorded["rcptSign"]
    # ... and the next sale took the next number, not s1's
    assert signed(pipeline) == [(1, "T1"), (2, "T2")]
    assert_kra_is_consistent(pipeline)


def test_lost_answer_then_901_on_the_resend_is_accepted_not_dead_lettered(
    pipeline: Pipeline,
) -> None:
    ready(pipeline)
    script(pipeline, *lost_then("901", "It is not a valid device"))
    pipeline.enqueue([sale("s1", "T1"), sale("s2", "T2")])

    pipeline.drain()

    assert pipeline.job("s1").state == "accepted" and pipeline.job("s1").invc_no == 1
    assert pipeline.branch().parked_reason is None
    assert signed(pipeline) == [(1, "T1"), (2, "T2")]
    assert_kra_is_consistent(pipeline)


def test_lost_answer_then_a_sequence_answer_is_recognised_as_ours(pipeline: Pipeline) -> None:
    # GavaConnect answers a replayed number with "expected: N+1 but found: N"
    ready(pipeline)
    script(pipeline, *lost_then("910", "Invalid invcNo sequence, expected: 2 but found: 1"))
    pipeline.enqueue([sale("s1", "T1"), sale("s2", "T2")])

    pipeline.drain()

    assert pipeline.job("s1").state == "accepted" and pipeline.job("s1").invc_no == 1
    assert signed(pipeline) == [(1, "T1"), (2, "T2")]
    assert_kra_is_consistent(pipeline)


def test_a_refusal_after_a_maybe_sent_attempt_that_kra_never_recorded_releases_the_number(
    pipeline: Pipeline,
) -> None:
    # Given the first send is dropped before KRA processes it, and the resend gets 910
    ready(pipeline)
    script(
        pipeline,
        {"endpoint": SALE, "kind": "drop", "times": 1},
        {"endpoint": SALE, "kind": "result_code", "code": "910", "message": "bad", "times": 1},
    )
    pipeline.enqueue([sale("s1", "T1"), sale("s2", "T2")])

    pipeline.drain()

    # Then KRA's lookup said 001: only now is the refusal final and the number released
    dead = pipeline.job("s1")
    assert dead.state == "dead" and dead.result_code == "910" and dead.invc_no is None
    assert signed(pipeline) == [(1, "T2")]
    assert_kra_is_consistent(pipeline)


# --------------------------------------------------------------- duplicate, then lookup 001


def test_a_duplicate_whose_lookup_finds_nothing_parks_holding_the_number(
    pipeline_factory: Any,
) -> None:
    p = pipeline_factory(branches=("00", "01"), trd_invc_no_scope="tin")  # KRA: per tin
    p.enqueue(registered_stock("00") + registered_stock("01"))
    p.drain("00")
    p.drain("01")
    # Given s1's first send is dropped (it may have reached KRA) ...
    script(p, {"endpoint": SALE, "kind": "drop", "times": 1})
    p.enqueue([sale("s1", "T1")])
    with p.runtime.engine.connect() as conn:
        branch_id = int(q.get_branch(conn, TIN, "00").id)
    p.runtime.settings.drain.max_jobs = 1  # one send, then leave: no resend yet
    drain(branch_id, p.runtime.drain_context())
    p.runtime.settings.drain.max_jobs = 500
    assert (p.job("s1").state, p.job("s1").invc_no) == ("unknown", 1)
    # ... and meanwhile another branch's sale with the same trader invoice is signed
    p.enqueue([sale("other@01", "T1", bhf="01")])
    p.drain("01")

    # When s1 is resent, KRA answers 994 and its lookup of invcNo 1 says 001
    report = p.drain("00")

    # Then s1 is not "accepted": the branch parks, holding the job and its number
    assert report.status == "parked"
    job = p.job("s1")
    assert job.state == "pending" and job.invc_no == 1 and job.receipt is None
    assert "994" in p.branch().parked_reason and "invcNo 1" in p.branch().parked_reason
    assert p.branch().next_invc_no == 2

    # When the operator skips it, its number is not reused (it may be at KRA) ...
    done = skip(p.runtime.engine, job.id, OPS, reason="sold on branch 01 already")
    assert not done.released and done.unparked and "set-next" in done.describe()
    p.enqueue([sale("s2", "T2")])
    p.drain("00")
    # ... KRA says which number it expects, the branch parks naming it, status shows it
    assert p.branch().kra_expected_invc_no == 1
    assert "set-next P051234567A/00 --invc 1" in p.branch().parked_reason
    assert status_line(p, "00")["kra_expects_invc_no"] == 1
    assert "KRA expects invcNo 1" in status_text(p)
    set_next(p.runtime.engine, TIN, "00", OPS, invc_no=1, sar_no=None, reason="KRA said so")
    p.drain("00")

    # Then the next sale took the number KRA expected, and T1 was signed once in all
    assert signed(p, "00") == [(1, "T2")] and signed(p, "01") == [(1, "T1")]
    assert p.branch().kra_expected_invc_no is None
    assert_kra_is_consistent(p)


def run_cli(p: Pipeline, *args: str) -> str:
    """``etims-relay ARGS`` in-process against this test's database (settings read afresh)."""
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, list(args), env=cli_env(p))
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def status_line(p: Pipeline, bhf: str) -> dict[str, Any]:
    rows = json.loads(run_cli(p, "status", "--json"))["branches"]
    return next(r for r in rows if r["bhf_id"] == bhf)


def status_text(p: Pipeline) -> str:
    return " ".join(run_cli(p, "status").split())


def cli_env(p: Pipeline) -> dict[str, str]:
    settings = p.runtime.settings
    return {
        "ETIMS_DATABASE_URL": settings.database_url,
        "ETIMS_SECRET_KEY": settings.secret_key.get_secret_value() if settings.secret_key else "",
        "ETIMS_STATE_DIR": str(settings.state_dir),
    }


# --------------------------------------------------------------- 921 vs 994 on a first send


def test_994_on_a_first_send_is_a_double_submission_naming_our_other_job(
    pipeline_factory: Any,
) -> None:
    # Given branch 01 already sold trader invoice T1, and a till sends T1 again on branch 00
    p = pipeline_factory(branches=("00", "01"), trd_invc_no_scope="tin")  # KRA: per tin
    p.enqueue(registered_stock("00") + registered_stock("01"))
    p.drain("00")
    p.drain("01")
    p.enqueue([sale("first@01", "T1", bhf="01")])
    p.drain("01")
    p.enqueue([sale("again", "T1"), sale("s2", "T2")])

    p.drain("00")

    # Then the second submission is dead with KRA's words and our other job's key; KRA did
    # not take its number, so the next sale has it
    again = p.job("again")
    assert again.state == "dead" and again.result_code == "994"
    assert "Overlapped data" in again.result_message and "first@01" in again.result_message
    assert p.branch().parked_reason is None
    assert signed(p, "00") == [(1, "T2")]
    assert_kra_is_consistent(p)


# --------------------------------------------------------------- systemic rejections


def test_a_systemic_rejection_parks_the_branch_instead_of_dead_lettering_each_sale(
    pipeline: Pipeline,
) -> None:
    # Given KRA refuses the first sale for a tax-rate mismatch (it would refuse every one)
    ready(pipeline)
    words = "Rule taxRtE failed: Tax rate mismatch. Expected: 0.00, Found: 8"
    script(pipeline, {"endpoint": SALE, "kind": "result_code", "code": "910", "message": words,
                      "times": 1})  # fmt: skip
    pipeline.enqueue([sale("s1", "T1"), sale("s2", "T2"), sale("s3", "T3")])

    # When the branch drains
    report = pipeline.drain()

    # Then it parks with KRA's words and the fix; no sale is dead, s1 keeps its number
    assert report.status == "parked"
    reason = pipeline.branch().parked_reason
    assert words in reason and "ETIMS_TAX_RATES" in reason
    assert "etims-relay branch unpark P051234567A/00" in reason
    assert set(pipeline.states()[k] for k in ("s1", "s2", "s3")) == {"pending"}
    assert pipeline.job("s1").invc_no == 1

    # When the operator fixed the rates and unparks, every sale goes, in order, s1 first
    unpark(pipeline.runtime.engine, TIN, "00", OPS, reason="rates fixed")
    pipeline.drain()
    assert signed(pipeline) == [(1, "T1"), (2, "T2"), (3, "T3")]
    assert_kra_is_consistent(pipeline)


def test_skipping_the_head_of_a_parked_branch_hands_its_unsent_number_on(
    pipeline: Pipeline,
) -> None:
    ready(pipeline)
    script(pipeline, {"endpoint": SALE, "kind": "result_code", "code": "901",
                      "message": "It is not a valid device", "times": 1})  # fmt: skip
    pipeline.enqueue([sale("s1", "T1"), sale("s2", "T2")])
    assert pipeline.drain().status == "parked"
    head = pipeline.job("s1")

    # KRA refused s1's only send outright: skipping it releases its number and unparks
    done = skip(pipeline.runtime.engine, head.id, OPS, reason="device re-registered, resold")
    assert done.released and done.unparked
    pipeline.drain()

    assert pipeline.job("s1").state == "skipped"
    assert signed(pipeline) == [(1, "T2")]
    assert_kra_is_consistent(pipeline)


def test_set_next_never_hands_on_a_number_a_parked_job_may_have_sent(pipeline: Pipeline) -> None:
    # Given s1's answer is lost, and KRA cannot be asked what it holds (lookups fail)
    ready(pipeline)
    pipeline.runtime.settings.retry.max_attempts = 1
    pipeline.runtime.settings.retry.give_up_after_s = 0
    script(
        pipeline,
        {"endpoint": SALE, "kind": "lost_answer", "times": 1},
        {"endpoint": SALE, "kind": "http_error", "status": 503},
        {"endpoint": "selectInvoiceDetails", "kind": "http_error", "status": 503},
    )
    pipeline.enqueue([sale("s1", "T1"), sale("s2", "T2")])
    assert pipeline.drain().status == "parked"
    assert pipeline.job("s1").invc_no == 1

    # When the operator tries to hand invcNo 1 on, it is refused, naming the job
    try:
        set_next(pipeline.runtime.engine, TIN, "00", OPS, invc_no=1, sar_no=None)
    except OperatorError as exc:
        assert "s1" in str(exc) and "--invc 2" in str(exc)
    else:
        raise AssertionError("set-next handed on a number that may be at KRA")

    # Then once KRA answers again, s1 is recognised as signed and s2 follows with invcNo 2
    httpx.delete(f"{pipeline.sim.url}/__admin/faults", timeout=5).raise_for_status()
    unpark(pipeline.runtime.engine, TIN, "00", OPS, reason="KRA back")
    pipeline.drain()
    assert pipeline.job("s1").state == "accepted"
    assert signed(pipeline) == [(1, "T1"), (2, "T2")]
    assert_kra_is_consistent(pipeline)


def test_set_next_gives_a_parked_job_that_never_reached_kra_the_new_number(
    pipeline: Pipeline,
) -> None:
    # Given KRA refused s1's only send as systemic: s1 holds invcNo 1, never at KRA
    ready(pipeline)
    script(pipeline, {"endpoint": SALE, "kind": "result_code", "code": "901",
                      "message": "It is not a valid device", "times": 1})  # fmt: skip
    pipeline.enqueue([sale("s1", "T1"), sale("s2", "T2")])
    assert pipeline.drain().status == "parked"

    # When the operator sets the next number to 1 (what KRA expects)
    set_next(pipeline.runtime.engine, TIN, "00", OPS, invc_no=1, sar_no=None, reason="checked")
    pipeline.drain()

    # Then s1 takes 1 afresh and s2 2: no number twice in the outbox or at KRA
    assert (pipeline.job("s1").invc_no, pipeline.job("s2").invc_no) == (1, 2)
    assert signed(pipeline) == [(1, "T1"), (2, "T2")]
    assert_kra_is_consistent(pipeline)
