"""``branch set-next`` guards against an operator's slip: no number twice, no silent gap.

Setting a branch's counter below a number our jobs hold would hand that number to a second
sale; setting it far ahead leaves a gap strict hosts refuse. Both need ``--force`` and a
reason, unless KRA itself named the number. Both stores, real simulator.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text

from producers import builders as b
from tests.helpers import ledger_writes
from tests.integration.pipeline_fixtures import Pipeline
from tests.workload import TIN, item_code
from worker.next_number import kra_confirms_next_invoice
from worker.outbox.models import audit_log
from worker.replay import Actor, InvalidInput, OperatorError, branch_counters, set_next

NOW = datetime.now(UTC)
WATER = b.SaleLine(item_code(1), "Water", Decimal("1"), Decimal("116"))
OPS = Actor("test-operator")


def two_sales_accepted(p: Pipeline) -> None:
    p.enqueue(
        [
            b.item(
                TIN, "00", "item-1", item_cd=item_code(1), item_nm="Water", price=Decimal("116")
            ),
            b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW),
            b.sale(TIN, "00", "s2", [WATER], trd_invc_no="T2", at=NOW),
        ]
    )
    p.drain()
    assert p.job("s2").state == "accepted" and p.job("s2").invc_no == 2


def test_the_counters_shown_before_set_next_say_what_kra_last_accepted(pipeline: Pipeline) -> None:
    two_sales_accepted(pipeline)
    views = branch_counters(pipeline.runtime.engine, TIN, "00")
    assert views["invcNo"].last_accepted == 2
    assert "last accepted 2" in views["invcNo"].describe()
    assert views["invcNo"].natural_next == 3


def test_going_backwards_is_refused_and_nothing_changes(pipeline: Pipeline) -> None:
    two_sales_accepted(pipeline)
    with pytest.raises(OperatorError, match=r"invcNo 2 goes backwards.*next free number is 3"):
        set_next(pipeline.runtime.engine, TIN, "00", OPS, invc_no=2, sar_no=None, reason="oops")
    assert pipeline.branch().next_invc_no == 3


def test_jumping_ahead_is_refused_unless_kra_named_the_number(pipeline: Pipeline) -> None:
    two_sales_accepted(pipeline)
    engine = pipeline.runtime.engine
    with pytest.raises(OperatorError, match=r"invcNo 40 jumps ahead of the next free number 3"):
        set_next(engine, TIN, "00", OPS, invc_no=40, sar_no=None, reason="typo for 4")
    assert pipeline.branch().next_invc_no == 3

    # KRA's own lookup does not confirm 40 (39 is not taken there): still refused
    device = pipeline.runtime.devices.get(TIN, "00")
    assert kra_confirms_next_invoice(pipeline.runtime.client, device.credentials, 40) is False
    # ... and confirms 3 (2 is ours, 3 is free), which is also the natural next
    assert kra_confirms_next_invoice(pipeline.runtime.client, device.credentials, 3) is True
    set_next(engine, TIN, "00", OPS, invc_no=3, sar_no=None, reason="unpark")
    assert pipeline.branch().next_invc_no == 3

    # A number KRA named itself (a sequence answer's "expected 7") goes through
    set_next(engine, TIN, "00", OPS, invc_no=7, sar_no=None, kra_expects={"invcNo": 7})
    assert pipeline.branch().next_invc_no == 7


def test_force_needs_a_reason_and_is_audited(pipeline: Pipeline) -> None:
    two_sales_accepted(pipeline)
    engine = pipeline.runtime.engine
    with pytest.raises(InvalidInput, match="--force needs a reason"):
        set_next(engine, TIN, "00", OPS, invc_no=50, sar_no=None, force=True)
    set_next(engine, TIN, "00", OPS, invc_no=50, sar_no=None, force=True, reason="KRA support")
    assert pipeline.branch().next_invc_no == 50
    with engine.connect() as conn:
        row = conn.execute(select(audit_log).where(audit_log.c.action == "set_next")).one()
    assert row.reason == "KRA support"
    assert "jumps ahead" in str(row.details)
    assert "last_accepted_invc_no" in str(row.details)


def while_the_sale_is_at_kra(p: Pipeline, trd_invc_no: str, action: Any, monkeypatch: Any) -> None:
    """Run ``action`` once, as the sale ``trd_invc_no`` goes to KRA (first send: in_flight,
    no attempt of it answered yet)."""
    client = p.runtime.client
    real_call = client.call
    done: list[bool] = []

    def call(endpoint: str, body: dict[str, Any], **kwargs: Any) -> Any:
        if not done and body.get("trdInvcNo") == trd_invc_no:
            done.append(True)
            action()
        return real_call(endpoint, body, **kwargs)

    monkeypatch.setattr(client, "call", call)


def sales_at_kra(p: Pipeline) -> list[tuple[int, str]]:
    writes = ledger_writes(p.sim.ledger_path, ["saveTrnsSalesOsdc"])
    return [(w["body"]["invcNo"], w["body"]["trdInvcNo"]) for w in writes]


def test_set_next_while_a_sale_is_out_is_refused_and_the_sale_keeps_its_number(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given sale s1 going to KRA under invcNo 1 for the first time, and an operator who sets
    # the branch's next number to 1 meanwhile (no job seemed to hold it)
    water_registered = [
        b.item(TIN, "00", "item-1", item_cd=item_code(1), item_nm="Water", price=Decimal("116"))
    ]
    pipeline.enqueue(water_registered)
    pipeline.drain()
    pipeline.enqueue([b.sale(TIN, "00", "s1", [WATER], trd_invc_no="T1", at=NOW)])
    refused: list[str] = []

    def operator_sets_next() -> None:
        with pytest.raises(OperatorError) as error:
            set_next(pipeline.runtime.engine, TIN, "00", OPS, invc_no=1, sar_no=None, reason="x")
        refused.append(str(error.value))

    while_the_sale_is_at_kra(pipeline, "T1", operator_sets_next, monkeypatch)

    # When the branch drains, and a second sale follows
    pipeline.drain()
    monkeypatch.undo()
    pipeline.enqueue([b.sale(TIN, "00", "s2", [WATER], trd_invc_no="T2", at=NOW)])
    pipeline.drain()

    # Then the operator was told why and what to do; s1 keeps the number KRA accepted it
    # under, and the next sale goes under 2
    assert refused and "is being drained" in refused[0] and "once the branch parks" in refused[0]
    s1, s2 = pipeline.job("s1"), pipeline.job("s2")
    assert (s1.state, s1.invc_no) == ("accepted", 1)
    assert (s2.state, s2.invc_no) == ("accepted", 2)
    assert sales_at_kra(pipeline) == [(1, "T1"), (2, "T2")]
    assert pipeline.branch().parked_reason is None


def test_a_sale_left_out_by_a_drain_that_died_keeps_its_number_when_the_counter_is_set(
    pipeline: Pipeline,
) -> None:
    # Given sale s1 sent once under invcNo 1 (in_flight, first send) by a drain that died;
    # its lease has run out
    two_sales_accepted(pipeline)
    pipeline.enqueue([b.sale(TIN, "00", "s3", [WATER], trd_invc_no="T3", at=NOW)])
    with pipeline.runtime.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET state = 'in_flight', invc_no = 3, body = '{}',"
                " maybe_recorded = FALSE WHERE idempotency_key = 's3'"
            )
        )
        conn.execute(text("UPDATE branches SET next_invc_no = 4, lease_until = 1"))

    # When the operator sets the counter to that sale's number, even with --force
    views = branch_counters(pipeline.runtime.engine, TIN, "00")
    with pytest.raises(OperatorError, match=r"holds invcNo 3, which may be at KRA"):
        set_next(
            pipeline.runtime.engine, TIN, "00", OPS, invc_no=3, sar_no=None, reason="x", force=True
        )

    # Then the counters count it as held, and the sale keeps its number and its body
    assert views["invcNo"].highest_held == 3
    s3 = pipeline.job("s3")
    assert (s3.invc_no, s3.body) == (3, "{}")
    assert pipeline.branch().next_invc_no == 4
