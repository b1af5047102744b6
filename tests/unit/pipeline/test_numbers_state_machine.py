"""Property: no number is ever given to a second job while a first job may have sent it.

A hypothesis state machine drives the real drain (decide, recovery, effects) over a real
SQLite outbox against a small in-memory KRA that keeps the rules that matter here: numbers
run 1, 2, 3... per branch (a repeat is 921, a gap is a sequence answer naming the expected
number), a trader invoice is signed once (994), and ``selectInvoiceDetails`` shows what is
held under a number. Hypothesis chooses the faults (lost answers, dropped sends, 5xx, 910,
901, failing lookups) and the operator's actions (set-next, skip, unpark, replay).
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import select

from producers import builders as b
from producers.enqueue import enqueue
from schemas.codes import DEFAULT_TAX_RATES
from tests.integration.pipeline_fixtures import make_settings
from tests.workload import TIN, item_code
from worker.drain import DrainContext, drain
from worker.oscu.outcome import CallOutcome, OutcomeKind
from worker.outbox import migrate
from worker.outbox import queries as q
from worker.outbox.branch_store import branch_store
from worker.outbox.db import make_engine
from worker.outbox.models import attempts, jobs
from worker.replay import Actor, OperatorError, replay, set_next, skip, unpark

WATER = b.SaleLine(item_code(1), "Water", Decimal("1"), Decimal("116"))
NOW = datetime.now(UTC)
OPS = Actor("property")
SALE = "saveTrnsSalesOsdc"
#: What KRA does with the next write: answer it, or one of the faults.
FAULTS = ["ok", "lost", "drop", "503", "910", "901", "seq_garbage"]


@dataclass
class FakeKra:
    """Branch 00 of one PIN, as KRA keeps it."""

    held: dict[int, str] = field(default_factory=dict)  # invcNo -> trdInvcNo
    trader: set[str] = field(default_factory=set)
    script: deque[str] = field(default_factory=deque)
    lookups_fail: int = 0

    @property
    def last(self) -> int:
        return max(self.held, default=0)

    def call(self, endpoint: str, body: Any, **_: Any) -> CallOutcome:
        fault = self.script.popleft() if self.script else "ok"
        if fault == "drop":
            return CallOutcome(OutcomeKind.UNKNOWN, endpoint, message="reset", error="ReadError")
        if fault == "503":
            return CallOutcome(OutcomeKind.TRANSIENT, endpoint, message="HTTP 503", http_status=503)
        if fault == "910":
            return CallOutcome(OutcomeKind.REJECTED, endpoint, "910", "parameter error")
        if fault == "901":
            return CallOutcome(OutcomeKind.AUTH, endpoint, "901", "It is not a valid device")
        if fault == "seq_garbage":
            return CallOutcome(OutcomeKind.SEQUENCE, endpoint, "922", "after the sales data")
        answer = self._process(endpoint, body)
        if fault == "lost":
            return CallOutcome(OutcomeKind.UNKNOWN, endpoint, message="lost", error="ReadError")
        return answer

    def _process(self, endpoint: str, body: Any) -> CallOutcome:
        if endpoint != SALE:
            return CallOutcome(OutcomeKind.ACCEPTED, endpoint, "000", "ok")
        number, trd = int(body["invcNo"]), str(body["trdInvcNo"])
        if number <= self.last:
            return CallOutcome(OutcomeKind.DUPLICATE, endpoint, "921", f"invcNo {number} taken")
        if number > self.last + 1:
            message = f"Invalid invcNo sequence, expected: {self.last + 1} but found: {number}"
            return CallOutcome(OutcomeKind.REJECTED, endpoint, "910", message)
        if trd in self.trader:
            return CallOutcome(OutcomeKind.DUPLICATE, endpoint, "994", f"trdInvcNo {trd} exists")
        self.held[number] = trd
        self.trader.add(trd)
        signature = {"rcptNo": number, "intrlData": "A" * 26, "rcptSign": "B" * 16,
                     "totRcptNo": number, "vsdcRcptPbctDate": "20261205100000",
                     "sdcId": "KRACU0100000001", "mrcNo": "WIS01000001"}  # fmt: skip
        return CallOutcome(OutcomeKind.ACCEPTED, endpoint, "000", "ok", data=signature)

    def select_invoice_details(self, device: Any, number: int) -> CallOutcome:
        endpoint = "selectInvoiceDetails"
        if self.lookups_fail:
            self.lookups_fail -= 1
            return CallOutcome(OutcomeKind.TRANSIENT, endpoint, message="HTTP 503")
        if number not in self.held:
            return CallOutcome(OutcomeKind.EMPTY, endpoint, "001", "no data")
        sale = {"invcNo": number, "trdInvcNo": self.held[number]}
        return CallOutcome(OutcomeKind.ACCEPTED, endpoint, "000", "ok", data={"salesList": [sale]})


class _Device:
    credentials = None
    sdc_id = "KRACU0100000001"
    mrc_no = "WIS01000001"


class _Devices:
    def get(self, tin: str, bhf_id: str) -> _Device:
        return _Device()

    def forget(self, tin: str, bhf_id: str) -> None:
        pass

    def tax_rates(
        self, tin: str, bhf_id: str, override: Mapping[str, Decimal] | None, conn: Any = None
    ) -> Mapping[str, Decimal]:
        """KRA's class-04 rates as the spec tables them (this KRA is in memory)."""
        return override or DEFAULT_TAX_RATES

    def key_worked(self, tin: str, bhf_id: str, at: float | None = None) -> None:
        pass


_TEMPLATE: dict[str, Path] = {}


def migrated_copy(tmp: Path) -> str:
    """A migrated SQLite outbox (migrated once per session, copied per example)."""
    if "db" not in _TEMPLATE:
        template = tmp.parent / f"template-{time.time_ns()}.db"
        migrate.upgrade(f"sqlite:///{template}")
        _TEMPLATE["db"] = template
    target = tmp / f"outbox-{time.time_ns()}.db"
    shutil.copy(_TEMPLATE["db"], target)
    return f"sqlite:///{target}"


class NumbersAtKra(RuleBasedStateMachine):
    tmp: Path

    def __init__(self) -> None:
        super().__init__()
        url = migrated_copy(self.tmp)
        self.settings = make_settings(url, "http://127.0.0.1:9/unused", self.tmp)
        self.settings.retry.max_attempts = 3
        self.settings.retry.give_up_after_s = 0
        self.settings.drain.inline_wait_s = 0
        self.engine = make_engine(url)
        self.kra = FakeKra()
        self.now = time.time()
        self.context = DrainContext(
            store=branch_store(self.engine), client=self.kra, devices=_Devices(),  # type: ignore[arg-type]
            settings=self.settings, clock=lambda: self.now, sleep=lambda s: None,
        )  # fmt: skip
        self.sales = 0

    def teardown(self) -> None:
        self.engine.dispose()

    # -- producers and KRA ----------------------------------------------------------------------

    @rule()
    def a_till_sells(self) -> None:
        self.sales += 1
        key = f"s{self.sales}"
        enqueue(
            self.engine, [b.sale(TIN, "00", key, [WATER], trd_invc_no=f"T{self.sales}", at=NOW)]
        )

    @precondition(lambda self: self.sales > 0)
    @rule(
        faults=st.lists(st.sampled_from(FAULTS), max_size=3),
        lookups_fail=st.integers(0, 3),
        elsewhere=st.sampled_from([None, None, "ahead", "clash"]),
        pick=st.integers(0, 50),
    )
    def the_branch_drains(
        self, faults: list[str], lookups_fail: int, elsewhere: str | None, pick: int
    ) -> None:
        """KRA answers the next writes with ``faults`` (queued after any still unused, then
        normally) and fails its next ``lookups_fail`` lookups. Before, maybe, something
        happens at KRA behind our back: another system takes the branch's next number
        (``ahead``), or another branch signs one of our trader invoices (``clash``)."""
        if elsewhere == "ahead":
            number = self.kra.last + 1
            self.kra.held[number] = f"X{number}"
            self.kra.trader.add(f"X{number}")
        elif elsewhere == "clash":
            self.kra.trader.add(f"T{pick % self.sales + 1}")
        self.kra.script.extend(faults)
        self.kra.lookups_fail = lookups_fail
        self.now += 1000.0  # every retry is due
        drain(int(self._branch().id), self.context)

    @precondition(lambda self: self.sales > 0)
    @rule(action=st.sampled_from(["set-next", "unpark", "skip/replay"]), pick=st.integers(0, 50))
    def the_operator_acts(self, action: str, pick: int) -> None:
        """What an operator does after checking KRA: set-next to KRA's next number, unpark,
        skip a job, replay a dead one (refusals leave everything as it was)."""
        parked = self._branch().parked_reason is not None
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.state).order_by(jobs.c.id)).all()
        job_id, state = rows[pick % len(rows)]
        try:
            if action == "set-next" and parked:
                set_next(self.engine, TIN, "00", OPS, invc_no=self.kra.last + 1, sar_no=None)
            elif action == "unpark" and parked:
                unpark(self.engine, TIN, "00", OPS, reason="checked")
            elif action == "skip/replay" and state == "dead":
                replay(self.engine, job_id, OPS, reason="fixed")
            elif action == "skip/replay":
                skip(self.engine, job_id, OPS, reason="given up")
        except OperatorError:
            pass  # refused (e.g. a number held below the one asked): nothing changed

    # -- the property ---------------------------------------------------------------------------

    def _branch(self) -> Any:
        with self.engine.connect() as conn:
            return q.get_branch(conn, TIN, "00")

    def _jobs(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs.c.id, jobs.c.idempotency_key, jobs.c.state, jobs.c.invc_no)
            ).all()
        return {row.idempotency_key: row for row in rows}

    @invariant()
    def a_sale_kra_holds_keeps_its_number_and_no_other_job_has_it(self) -> None:
        current = self._jobs()
        for number, trd in self.kra.held.items():
            if not trd.startswith("T"):
                continue  # another system's sale
            job = current["s" + trd.removeprefix("T")]
            assert job.invc_no == number and job.state != "dead", (trd, number, job)
            others = [
                j for j in current.values()
                if j.invc_no == number and j.id != job.id and j.state not in ("dead", "skipped")
            ]  # fmt: skip
            assert not others, (trd, number, others)

    @invariant()
    def a_job_is_accepted_only_when_kra_holds_it_under_its_number(self) -> None:
        for key, job in self._jobs().items():
            if job.state == "accepted":
                assert self.kra.held.get(job.invc_no) == "T" + key.removeprefix("s"), job

    @invariant()
    def a_number_a_job_may_have_sent_goes_to_no_second_job(self) -> None:
        """The direct form, from the attempts alone: while a job that may have sent N
        still holds N, no other live job holds N."""
        current = self._jobs()
        by_id = {job.id: job for job in current.values()}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(attempts.c.job_id, attempts.c.kra_number).where(
                    attempts.c.outcome.in_(["unknown", "transient", "rate_limited"])
                )
            ).all()
        for job_id, number in rows:
            first = by_id[job_id]
            if number is None or first.invc_no != number:
                continue
            second = [
                j for j in current.values()
                if j.id != job_id and j.invc_no == number and j.state not in ("dead", "skipped")
            ]  # fmt: skip
            assert not second, (first, second)


@pytest.fixture
def machine_tmp(tmp_path: Path) -> Path:
    return tmp_path


def test_no_number_is_given_to_a_second_job_while_a_first_may_have_sent_it(
    machine_tmp: Path,
) -> None:
    NumbersAtKra.tmp = machine_tmp
    run = NumbersAtKra.TestCase()
    run.settings = settings(
        max_examples=100,
        stateful_step_count=20,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        # A failure prints every step; shrinking would re-run SQLite examples for minutes.
    )
    run.runTest()
