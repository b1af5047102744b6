"""A producer's double submission (the same trdInvcNo under a new idempotency key) is refused
at the door, per the configured scope, instead of stalling its branch on KRA's 994.

On SQLite and PostgreSQL through ``enqueue``, the HTTP intake (TestClient) and the CLI; the
race of two concurrent batches on PostgreSQL with real threads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, update

from producers import builders as b
from producers.enqueue import EnqueueOptions, TrdInvcNoConflict, enqueue
from schemas.jobs import TrdInvcNoScope
from tests.helpers import RelayEnv
from tests.integration.producers.intake_fixtures import IntakeServer, start_intake
from tests.workload import TIN
from worker.outbox import intake_queries
from worker.outbox.models import jobs
from worker.replay import Actor, OperatorError, edit

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
SOAP = b.SaleLine("KE2NTNO0000001", "Soap", Decimal("1"), Decimal("116"))
BRANCH, TIN_WIDE, OFF = TrdInvcNoScope.BRANCH, TrdInvcNoScope.TIN, TrdInvcNoScope.OFF


def sale(key: str, trd: str, bhf: str = "00") -> dict[str, Any]:
    return b.sale(TIN, bhf, key, [SOAP], trd_invc_no=trd, at=NOW)


def job_keys(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(k) for k in conn.scalars(select(jobs.c.idempotency_key).order_by(jobs.c.id))]


def scoped(scope: TrdInvcNoScope) -> EnqueueOptions:
    return EnqueueOptions(trd_invc_no_scope=scope)


# --------------------------------------------------------------------------- enqueue()


def test_a_reused_number_under_another_key_is_refused_naming_that_key(engine: Engine) -> None:
    enqueue(engine, [sale("till-1:1", "INV-1")])
    fresh = sale("till-1:2", "INV-2")
    with pytest.raises(TrdInvcNoConflict) as caught:
        enqueue(engine, [fresh, sale("till-2:9", "INV-1")])
    assert caught.value.index == 1 and caught.value.other_key == "till-1:1"
    assert "'INV-1' is already used by idempotency_key 'till-1:1'" in str(caught.value)
    assert job_keys(engine) == ["till-1:1"]  # nothing of the refused batch, not even INV-2


def test_the_same_key_and_content_stays_idempotent(engine: Engine) -> None:
    first = enqueue(engine, [sale("till-1:1", "INV-1")])
    again = enqueue(engine, [sale("till-1:1", "INV-1"), sale("till-1:1", "INV-1")])
    assert [r.id for r in again] == [first[0].id] * 2 and not any(r.created for r in again)


def test_a_number_used_twice_in_one_batch_is_refused(engine: Engine) -> None:
    with pytest.raises(TrdInvcNoConflict) as caught:
        enqueue(engine, [sale("a", "INV-7"), sale("b", "INV-8"), sale("c", "INV-7")])
    assert caught.value.index == 2 and caught.value.other_key == "a"
    assert job_keys(engine) == []


def test_a_credit_note_shares_the_number_space_of_sales(engine: Engine) -> None:
    enqueue(engine, [sale("s1", "INV-1")])
    note = b.credit_note(TIN, "00", "cn1", "s1", [SOAP], trd_invc_no="INV-1", at=NOW)
    with pytest.raises(TrdInvcNoConflict):
        enqueue(engine, [note])
    note = b.credit_note(TIN, "00", "cn1", "s1", [SOAP], trd_invc_no="CN-1", at=NOW)
    assert enqueue(engine, [note])[0].created


def test_branch_scope_allows_the_number_on_another_branch(engine: Engine) -> None:
    enqueue(engine, [sale("a", "INV-1", "00")], options=scoped(BRANCH))
    assert enqueue(engine, [sale("b", "INV-1", "01")], options=scoped(BRANCH))[0].created


def test_tin_scope_refuses_the_number_on_another_branch(engine: Engine) -> None:
    enqueue(engine, [sale("a", "INV-1", "00")], options=scoped(TIN_WIDE))
    with pytest.raises(TrdInvcNoConflict) as caught:
        enqueue(engine, [sale("b", "INV-1", "01")], options=scoped(TIN_WIDE))
    assert caught.value.other_key == "a" and caught.value.scope == f"tin {TIN}"
    with pytest.raises(TrdInvcNoConflict):  # in one batch too
        batch = [sale("c", "INV-2", "00"), sale("d", "INV-2", "02")]
        enqueue(engine, batch, options=scoped(TIN_WIDE))


def test_widening_the_scope_later_still_sees_earlier_jobs(engine: Engine) -> None:
    enqueue(engine, [sale("a", "INV-1", "00")], options=scoped(BRANCH))
    with pytest.raises(TrdInvcNoConflict):
        enqueue(engine, [sale("b", "INV-1", "01")], options=scoped(TIN_WIDE))


def test_off_allows_a_reused_number(engine: Engine) -> None:
    enqueue(engine, [sale("a", "INV-1")], options=scoped(OFF))
    again = enqueue(engine, [sale("b", "INV-1"), sale("c", "INV-1")], options=scoped(OFF))
    assert all(r.created for r in again)
    assert job_keys(engine) == ["a", "b", "c"]


def test_an_operator_edit_moves_the_claim_and_is_refused_on_a_taken_number(
    engine: Engine,
) -> None:
    enqueue(engine, [sale("a", "INV-1"), sale("b", "INV-2")])
    with engine.begin() as conn:  # b was refused by KRA (say 994: INV-2 came from elsewhere)
        b_id = conn.scalar(
            update(jobs)
            .where(jobs.c.idempotency_key == "b")
            .values(state="dead")
            .returning(jobs.c.id)
        )
    assert b_id is not None
    with pytest.raises(OperatorError, match="already used by idempotency_key 'a'"):
        edit(engine, b_id, Actor("ops:test"), sets=[("trdInvcNo", "INV-1")])
    edit(engine, b_id, Actor("ops:test"), sets=[("trdInvcNo", "INV-3")])
    # Then INV-3 belongs to b, and INV-2 is free again
    with pytest.raises(TrdInvcNoConflict) as caught:
        enqueue(engine, [sale("c", "INV-3")])
    assert caught.value.other_key == "b"
    assert enqueue(engine, [sale("d", "INV-2")])[0].created


# --------------------------------------------------------------------------- HTTP intake


@pytest.fixture
def intake_at(db_url: str) -> Iterator[Callable[..., IntakeServer]]:
    """Real intake servers over this test's database (both stores), with a chosen scope."""
    started: list[IntakeServer] = []

    def start(scope: TrdInvcNoScope) -> IntakeServer:
        server = start_intake(db_url, options=scoped(scope))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def post(client: httpx.Client, *records: dict[str, Any]) -> httpx.Response:
    body = json.dumps({"jobs": list(records)}, default=float)
    return client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})


def test_intake_answers_409_naming_the_other_key(intake_at: Callable[..., IntakeServer]) -> None:
    intake = intake_at(BRANCH)
    client = intake.client(intake.key())
    assert post(client, sale("till-1:1", "INV-1")).status_code == 202
    response = post(client, sale("till-1:2", "INV-2"), sale("till-2:1", "INV-1"))
    assert response.status_code == 409
    [error] = response.json()["errors"]
    assert error["index"] == 1 and error["path"] == "payload.trdInvcNo"
    assert "idempotency_key 'till-1:1'" in error["message"]
    assert job_keys(intake.engine) == ["till-1:1"]
    # a resend of the first request is still the same job
    again = post(client, sale("till-1:1", "INV-1"))
    assert again.status_code == 202 and again.json()["jobs"][0]["created"] is False


def test_intake_tin_scope_refuses_across_branches_and_off_allows(
    intake_at: Callable[..., IntakeServer],
) -> None:
    tin_wide = intake_at(TIN_WIDE)
    tin_client = tin_wide.client(tin_wide.key())
    assert post(tin_client, sale("a", "INV-1", "00")).status_code == 202
    refused = post(tin_client, sale("b", "INV-1", "01"))
    assert refused.status_code == 409 and "'a'" in refused.json()["errors"][0]["message"]
    off = intake_at(OFF)
    assert post(off.client(off.key()), sale("b", "INV-1", "01")).status_code == 202
    assert job_keys(off.engine) == ["a", "b"]


# --------------------------------------------------------------------------- concurrency


def _race(intake: IntakeServer, key: str, batches: list[dict[str, Any]]) -> list[int]:
    """POST each batch from its own thread and connection, released together."""
    clients = [intake.client(key) for _ in batches]
    start = threading.Barrier(len(batches))
    statuses: list[int] = [0] * len(batches)

    def send(position: int) -> None:
        start.wait(timeout=30)
        statuses[position] = post(clients[position], batches[position]).status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


@pytest.mark.parametrize("scope", [BRANCH, TIN_WIDE])
def test_concurrent_batches_with_one_number_have_exactly_one_winner(
    pg_url: str, scope: TrdInvcNoScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = start_intake(pg_url, options=scoped(scope))
    try:
        _one_winner_per_round(intake, scope, monkeypatch)
    finally:
        intake.stop()


def _one_winner_per_round(
    intake: IntakeServer, scope: TrdInvcNoScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = intake.key()
    if scope is TIN_WIDE:
        # Hold each request's first lookup until both racers have done theirs: neither sees
        # the other's job, so only the unique index can stop the second insert.
        _hold_first_lookups(monkeypatch, parties=2)
    for round_no in range(5):
        trd = f"INV-{round_no}"
        bhfs = ["00", "01"] if scope is TIN_WIDE else ["00", "00"]
        batches = [sale(f"k{round_no}-{i}", trd, bhf) for i, bhf in enumerate(bhfs)]
        statuses = _race(intake, key, batches)
        assert sorted(statuses) == [202, 409], (round_no, statuses)
        with intake.engine.connect() as conn:
            holders = conn.execute(
                select(func.count()).select_from(jobs).where(jobs.c.trd_invc_no == trd)
            ).scalar_one()
        assert holders == 1


def _hold_first_lookups(monkeypatch: pytest.MonkeyPatch, parties: int) -> None:
    """Wrap the real lookup: the first call of each enqueue attempt pair waits for the others."""
    real = intake_queries.jobs_with_trader_invoices
    barrier = threading.Barrier(parties)
    waited: set[tuple[int, tuple[str, ...]]] = set()
    lock = threading.Lock()

    def held(conn: Any, tin: str, numbers: Any) -> Any:
        rows = real(conn, tin, numbers)
        call = (threading.get_ident(), tuple(numbers))
        with lock:
            first = call not in waited
            waited.add(call)
        if first:  # the retry after the unique violation goes straight on
            barrier.wait(timeout=30)
        return rows

    monkeypatch.setattr(intake_queries, "jobs_with_trader_invoices", held)


# --------------------------------------------------------------------------- CLI


def test_cli_enqueue_names_the_line_and_the_other_key(relay_env: RelayEnv, tmp_path: Path) -> None:
    header = "tin,bhf_id,idempotency_key,trd_invc_no,date,item_cd,item_nm,qty,price\n"
    row = "P051234567A,{bhf},{key},{trd},2026-11-22 09:00:00,KE2NTNO0000001,Soap,1,116\n"
    (tmp_path / "day1.csv").write_text(header + row.format(bhf="00", key="s-1", trd="INV-1"))
    relay_env.cli("enqueue", str(tmp_path / "day1.csv"))
    day2 = header + row.format(bhf="00", key="s-2", trd="INV-2")
    day2 += row.format(bhf="00", key="s-1-again", trd="INV-1")
    (tmp_path / "day2.csv").write_text(day2)
    result = relay_env.cli("enqueue", str(tmp_path / "day2.csv"), check=False)
    assert result.returncode == 1
    assert (
        f"line 3: trd_invc_no: 'INV-1' is already used by idempotency_key 's-1' "
        f"(branch {TIN}/00); nothing was enqueued"
    ) in result.stdout.splitlines()
    assert sum(relay_env.status()["jobs"].values()) == 1
    # Under ETIMS_TRD_INVC_NO_SCOPE=off the same file goes in.
    relay_env.extra["ETIMS_TRD_INVC_NO_SCOPE"] = "off"
    assert "enqueued 2 new job(s)" in relay_env.cli("enqueue", str(tmp_path / "day2.csv")).stdout
