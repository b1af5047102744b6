"""``branch set-next`` guards against an operator's slip: no number twice, no silent gap.

Setting a branch's counter below a number our jobs hold would hand that number to a second
sale; setting it far ahead leaves a gap strict hosts refuse. Both need ``--force`` and a
reason, unless KRA itself named the number. Both stores, real simulator.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from producers import builders as b
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
