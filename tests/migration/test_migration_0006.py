"""0006 on an outbox that already holds sales: each gets its trdInvcNo from its payload, and
numbers reused before the check existed do not stop the upgrade (they carry no claim)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from producers import builders as b
from producers.enqueue import TrdInvcNoConflict, enqueue
from worker.outbox import migrate
from worker.outbox.db import make_engine

TIN = "P051234567A"


def test_upgrade_backfills_trader_invoice_numbers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0004")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO branches (id, tin, bhf_id, next_seq, next_invc_no, next_sar_no, "
                "fencing_token, created_at) VALUES (1, :tin, '00', 4, 1, 1, 0, 0)"
            ),
            {"tin": TIN},
        )
        for seq, (kind, payload) in enumerate(
            [
                ("sale", {"trdInvcNo": "INV-1"}),
                ("sale", {"trdInvcNo": "INV-1"}),  # the double submission 0006 refuses
                ("item", {"itemCd": "KE2NTNO0000001"}),
            ],
            start=1,
        ):
            conn.execute(
                text(
                    "INSERT INTO jobs (branch_id, tin, bhf_id, seq, kind, idempotency_key, "
                    "payload, payload_hash, state, attempts, maybe_recorded, receipt_missing, "
                    "created_at, updated_at) VALUES (1, :tin, '00', :seq, :kind, :key, "
                    ":payload, 'h', 'accepted', 1, false, false, 0, 0)"
                ),
                {
                    "tin": TIN,
                    "seq": seq,
                    "kind": kind,
                    "key": f"k{seq}",
                    "payload": json.dumps(payload),
                },
            )
    engine.dispose()

    migrate.upgrade(url)

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, trd_invc_no, trd_invc_scope FROM jobs ORDER BY seq")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("sale", "INV-1", None),
        ("sale", "INV-1", None),
        ("item", None, None),
    ]
    # ... and enqueue sees those earlier sales: a third use of INV-1 is refused
    line = b.SaleLine("KE2NTNO0000001", "Soap", Decimal(1), Decimal(116))
    again = b.sale(TIN, "00", "k9", [line], trd_invc_no="INV-1", at=datetime.now(UTC))
    with pytest.raises(TrdInvcNoConflict) as caught:
        enqueue(engine, [again])
    assert caught.value.other_key == "k1"
    engine.dispose()
