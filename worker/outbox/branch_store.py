"""The drain's view of the outbox: one method per step, each its own short transaction.

Every method checks a connection out of the engine's pool and returns it before it
returns, so a drain holds no database connection while it waits on KRA: the number of
branches in flight is bounded by threads, not by connections. A pool that is momentarily
empty is a wait (the pool's timeout), not an error.

:class:`SqlBranchStore` runs the plain statements of ``sql/drain.sql`` and ``sql/lease.sql``
in one transaction per step (SQLite, where a transaction holds the database's write lock,
and every rare path on PostgreSQL). :class:`PostgresBranchStore` runs the per-job writes
(start; accept and retry) as the single fenced statements of ``sql/drain_postgresql.sql``
in autocommit: one round trip each instead of a transaction of four to six. They write the
same rows: the tests run both.

The fused step: a job's acceptance may carry the next job's start (``JobRecord.then``,
planned by the drain from the head read it already holds). On PostgreSQL both are one
statement (``accept_job_starting_next``), so a run of ready jobs costs one statement per job;
the plain store records, reads the head, then starts in the same transaction (under a
savepoint, the branch row locked first). Either way the start keeps every guard of
:meth:`BranchStore.start`, and also needs the job to be the branch's first active one after
the accepted job (what a fresh head read would show: a job ahead of it may have been
unblocked since the drain's read). A refused start leaves the acceptance standing
(``Recorded.started`` is False; the drain then prepares the next job as usual).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, NoReturn, Protocol

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Dialect, Engine, TextClause
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from schemas.jobs import Counter, JobState
from worker.outbox.dependents import block_dependents, wake_dependents
from worker.outbox.named_sql import load
from worker.outbox.rows import (
    BranchHead,
    HeadJob,
    HeadMoved,
    Lease,
    LeaseLost,
    StockMasterFacts,
    StockOut,
    StockOutDeferral,
)
from worker.outbox.writes import (
    Accept,
    AttemptRow,
    EndedMember,
    EventJob,
    JobRecord,
    Kill,
    Number,
    Park,
    Recorded,
    Retry,
    Start,
    event_json,
)
from worker.pull_forward import pull_forward

_LEASE = load("lease.sql")
_DRAIN = load("drain.sql")
_PG = load("drain_postgresql.sql")


@dataclass(frozen=True, slots=True)
class TraderInvoiceHolder:
    """Another job of ours that carries a given trdInvcNo."""

    idempotency_key: str
    state: str


class BranchStore(Protocol):
    """What a drain reads and writes. Writes are fenced by the lease: a holder whose lease
    was taken over writes nothing and gets :class:`LeaseLost`."""

    def claim(self, branch_id: int, owner: str, now: float, ttl_s: float) -> Lease | None: ...

    def release(self, lease: Lease, wake_after: float | None, seen_next_seq: int | None) -> bool:
        """Give the branch back, due at ``wake_after``; False (and due now) if a job was
        enqueued after the read that returned ``seen_next_seq`` (None: due at ``wake_after``
        whatever was enqueued)."""
        ...

    def read_head(self, lease: Lease) -> BranchHead:
        """The branch's counters and its first two active jobs (the head, and the job after it)."""
        ...

    def block(self, lease: Lease, job: HeadJob, blocked_by: int, now: float) -> frozenset[int]:
        """The job's dependency can never be satisfied: block it and what depends on it.
        Raises :class:`HeadMoved` if the job is no longer as the head read showed it (an
        operator skipped it), :class:`LeaseLost` if the lease is gone or has run out."""
        ...

    def start(self, lease: Lease, start: Start, now: float) -> None:
        """Mark the job in_flight. Raises :class:`HeadMoved` if the job or the counter is
        not as the head read showed, :class:`LeaseLost` if the lease was taken over or has
        run out by ``now``."""
        ...

    def record(self, lease: Lease, record: JobRecord) -> Recorded:
        """Write a job's result; with ``record.then``, start the next job too. Raises
        :class:`LeaseLost` (nothing written) if the lease was taken over. A start refused
        by its guards (the job or counter moved, the lease ran out) is ``started=False``
        with the result written."""
        ...

    def stock_balance(self, branch_id: int, item_cd: str) -> Decimal | None: ...

    def invc_no_of(self, job_id: int) -> int | None: ...

    def jobs_with_trader_invoice(
        self, tin: str, trd_invc_no: str, exclude_id: int
    ) -> list[TraderInvoiceHolder]: ...

    def pull_forward(self, now: float, spread_s: float) -> int: ...

    def stock_master_facts(self, lease: Lease, job: HeadJob, item_cd: str) -> StockMasterFacts:
        """What coalescing asks before a stock master goes (``worker.coalesce``)."""

    def sale_past_stock(self, lease: Lease, job: HeadJob) -> StockOutDeferral:
        """What lets a later sale go before the never-sent stock-out ``job`` at the head
        (``worker.defer``)."""

    def merged_members(self, lease: Lease, job: HeadJob) -> list[StockOut]:
        """The stock-outs inside carrier ``job``'s frozen body (read for a resend)."""

    def merge_candidates(
        self, lease: Lease, job: HeadJob, sar_ty_cd: str, max_jobs: int
    ) -> list[StockOut]:
        """Stock-outs that may go inside never-sent carrier ``job``'s send
        (``worker.stock_merge`` picks among them)."""

    def supersede(self, lease: Lease, job: HeadJob, superseded_by: int, now: float) -> BranchHead:
        """End a never-sent stock master without a call, naming the job that carries its
        balance; return the branch's head as it is then (read in the same transaction, as
        an acceptance reads it along). Raises :class:`HeadMoved` if the job is no longer as
        the head read showed it (an operator skipped it), :class:`LeaseLost` if the lease
        is gone."""


def branch_store(engine: Engine) -> BranchStore:
    """The store for ``engine``'s database."""
    if engine.dialect.name == "postgresql":
        return PostgresBranchStore(engine)
    return SqlBranchStore(engine)


class SqlBranchStore:
    """Plain statements, one transaction per step."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _single(self) -> Iterator[Connection]:
        """For one statement that needs no transaction of its own (a read, or a write that
        is atomic by itself)."""
        with self._transaction() as conn:
            yield conn

    # ------------------------------------------------------------------ lease

    def claim(self, branch_id: int, owner: str, now: float, ttl_s: float) -> Lease | None:
        params = {"branch_id": branch_id, "owner": owner, "now": now, "ttl": ttl_s}
        with self._single() as conn:
            token = conn.execute(_LEASE["claim_lease"], params).scalar()
        return None if token is None else Lease(branch_id, int(token), owner)

    def release(self, lease: Lease, wake_after: float | None, seen_next_seq: int | None) -> bool:
        fence = {"branch_id": lease.branch_id, "token": lease.token}
        with self._transaction() as conn:
            if seen_next_seq is None:
                conn.execute(_LEASE["release_lease_due_at"], {**fence, "wake_after": wake_after})
                return True
            params = {**fence, "wake_after": wake_after, "seen_next_seq": seen_next_seq}
            if conn.execute(_LEASE["release_lease_if_unchanged"], params).rowcount:
                return True
            conn.execute(_LEASE["release_lease"], fence)
            return False

    # ------------------------------------------------------------------ reads

    def read_head(self, lease: Lease) -> BranchHead:
        with self._single() as conn:
            rows = conn.execute(_DRAIN["read_head"], _head_params(lease)).all()
        return BranchHead.from_rows(rows, lease.branch_id)

    def stock_balance(self, branch_id: int, item_cd: str) -> Decimal | None:
        with self._single() as conn:
            value = conn.execute(
                _DRAIN["stock_balance"], {"branch_id": branch_id, "item_cd": item_cd}
            ).scalar()
        if value is None:
            return None
        if isinstance(value, float):  # SQLite keeps NUMERIC as REAL: two decimals, exact
            return Decimal(f"{value:.2f}")
        return Decimal(value)

    def invc_no_of(self, job_id: int) -> int | None:
        with self._single() as conn:
            value = conn.execute(_DRAIN["job_invc_no"], {"job_id": job_id}).scalar()
        return None if value is None else int(value)

    def jobs_with_trader_invoice(
        self, tin: str, trd_invc_no: str, exclude_id: int
    ) -> list[TraderInvoiceHolder]:
        params = {"tin": tin, "trd_invc_no": trd_invc_no, "exclude_id": exclude_id}
        with self._single() as conn:
            rows = conn.execute(_DRAIN["jobs_with_trader_invoice"], params).all()
        return [TraderInvoiceHolder(str(r.idempotency_key), str(r.state)) for r in rows]

    def pull_forward(self, now: float, spread_s: float) -> int:
        with self._transaction() as conn:
            return pull_forward(conn, now, spread_s=spread_s)

    def stock_master_facts(self, lease: Lease, job: HeadJob, item_cd: str) -> StockMasterFacts:
        params = {
            "branch_id": lease.branch_id, "item_cd": item_cd, "seq": job.seq, "job_id": job.id,
        }  # fmt: skip
        with self._single() as conn:
            return StockMasterFacts.from_row(
                conn.execute(_DRAIN["stock_master_facts"], params).one()
            )

    def sale_past_stock(self, lease: Lease, job: HeadJob) -> StockOutDeferral:
        params = {"branch_id": lease.branch_id, "seq": job.seq, "job_id": job.id}
        with self._single() as conn:
            rows = conn.execute(_DRAIN["sale_past_deferred_stock"], params).all()
        return StockOutDeferral.from_rows(rows, lease.branch_id)

    def merged_members(self, lease: Lease, job: HeadJob) -> list[StockOut]:
        with self._single() as conn:
            rows = conn.execute(_DRAIN["merged_members"], {"job_id": job.id}).all()
        return [StockOut.from_row(r) for r in rows]

    def merge_candidates(
        self, lease: Lease, job: HeadJob, sar_ty_cd: str, max_jobs: int
    ) -> list[StockOut]:
        params = {
            "branch_id": lease.branch_id, "seq": job.seq, "sar_ty_cd": sar_ty_cd,
            "max_jobs": max_jobs,
        }  # fmt: skip
        with self._single() as conn:
            rows = conn.execute(_DRAIN["merge_candidates"], params).all()
        return [StockOut.from_row(r) for r in rows]

    # ------------------------------------------------------------------ writes

    def supersede(self, lease: Lease, job: HeadJob, superseded_by: int, now: float) -> BranchHead:
        params = {**_fence(lease), "job_id": job.id, "superseded_by": superseded_by, "now": now}
        body = json.loads(event_json(job, JobState.SUPERSEDED, now))
        body["superseded_by"] = superseded_by  # what a webhook consumer follows
        with self._transaction() as conn:
            if not conn.execute(_DRAIN["supersede_job"], params).rowcount:
                _refused(conn, lease, now)
            _insert_event(conn, job, JobState.SUPERSEDED, now, json.dumps(body, default=str))
            # the next step's head, without another pool checkout (under hundreds of
            # threads each checkout is a wait: bench/README.md, 2026-12-05 in flight)
            rows = conn.execute(_DRAIN["read_head"], _head_params(lease)).all()
        return BranchHead.from_rows(rows, lease.branch_id)

    def block(self, lease: Lease, job: HeadJob, blocked_by: int, now: float) -> frozenset[int]:
        params = {
            **_fence(lease), "job_id": job.id, "blocked_by": blocked_by, "now": now,
            "read_state": job.state.value,
        }  # fmt: skip
        with self._transaction() as conn:
            if not conn.execute(_DRAIN["block_job"], params).rowcount:
                _refused(conn, lease, now)
            _insert_event(conn, job, JobState.BLOCKED, now, event_json(job, JobState.BLOCKED, now))
            return block_dependents(conn, [job.id], now)

    def start(self, lease: Lease, start: Start, now: float) -> None:
        with self._transaction() as conn:
            if not _started(conn, lease, start, now):
                _refused(conn, lease, now)

    def record(self, lease: Lease, record: JobRecord) -> Recorded:
        job, now, write = record.job, record.now, record.write
        with self._transaction() as conn:
            if isinstance(write, (Kill, Park)) or record.then is not None:
                # they write the branch row too: locked first, as the operator tools do
                _fenced(conn.execute(_DRAIN["lock_branch"], _fence(lease)).rowcount)
            statement, values = _job_statement(write)
            params = {**_fence(lease), "job_id": job.id, "now": now, **values}
            _fenced(conn.execute(_DRAIN[statement], params).rowcount)
            if record.attempt is not None:
                params = _attempt_params(lease, job.id, record.attempt)
                conn.execute(_DRAIN["insert_attempt"], params)
            if record.event is not None:
                _insert_event(conn, job, _STATE_OF[type(write)], now, record.event)
            recorded = self._after(conn, lease, record)
            if isinstance(write, Park):
                return recorded
            rows = conn.execute(_DRAIN["read_head"], _head_params(lease)).all()
            head = BranchHead.from_rows(rows, lease.branch_id)
            # the next job's start after the head read, if that still shows it first (a job
            # ahead of it may have been unblocked since the drain's read); the head shows it
            # as it was before its start
            then = record.then
            started = then is not None and _first(head, then) and _started(conn, lease, then, now)
            return replace(recorded, head=head, started=started)

    def _after(self, conn: Connection, lease: Lease, record: JobRecord) -> Recorded:
        """What follows from a job's new state, in the same transaction."""
        job, now, write = record.job, record.now, record.write
        if job.merged:
            woken, ended = _end_members(conn, lease, record)
            done = self._after(conn, lease, replace(record, job=_carrier_alone(job)))
            return replace(done, woken=done.woken | woken, members=ended)
        match write:
            case Accept():
                for item_cd, qty in write.stock:
                    # as text: sqlite3 binds no Decimal; NUMERIC affinity makes it a number
                    params = {"branch_id": lease.branch_id, "item_cd": item_cd, "qty": str(qty)}
                    conn.execute(_DRAIN["add_stock"], params)
                if not job.wakes_dependents:
                    return Recorded(JobState.ACCEPTED)
                return Recorded(
                    JobState.ACCEPTED, wake_dependents(conn, job.id, lease.branch_id, now)
                )
            case Retry():
                return Recorded(write.state)
            case Kill():
                _give_back(conn, lease, write.gives_back)
                return Recorded(JobState.DEAD, block_dependents(conn, [job.id], now))
            case Park():
                _give_back(conn, lease, write.gives_back)
                expected = write.expected
                params = {
                    **_fence(lease), "reason": write.reason, "now": now,
                    "expected_invc_no": _value_of(expected, "invcNo"),
                    "expected_sar_no": _value_of(expected, "sarNo"),
                }  # fmt: skip
                _fenced(conn.execute(_LEASE["park_branch"], params).rowcount)
                return Recorded(JobState.PENDING)
        raise TypeError(write)


class PostgresBranchStore(SqlBranchStore):
    """The per-job statements as single fenced statements in autocommit (the rest as above).

    They run on the driver's raw cursor, with their text compiled once by SQLAlchemy to
    PostgreSQL's ``$n`` markers (:class:`_DriverStatement`): SQLAlchemy's execution path cost
    about four times the driver's own CPU per statement, most of a job's CPU in the drain
    (bench/README.md, "2026-12-05 drain redesign"). The text is the file's; only the
    parameter markers differ.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # PostgreSQL's own $n markers
        dollar = PGDialect_psycopg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
        self._sql = {
            name: _DriverStatement.of(clause, dollar)
            for name, clause in {**_DRAIN, **{f"pg_{k}": v for k, v in _PG.items()}}.items()
        }

    @contextmanager
    def _single(self) -> Iterator[Connection]:
        with self._autocommit.connect() as conn:
            yield conn

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A pooled connection's cursor in autocommit, returned to the pool afterwards."""
        fairy = self._engine.raw_connection()
        driver: Any = fairy.driver_connection
        try:
            driver.autocommit = True
            with psycopg.RawCursor(driver, row_factory=namedtuple_row) as cursor:
                yield cursor
        except Exception as exc:
            if driver.broken or driver.closed:  # never hand a dead connection out again
                fairy.invalidate(exc)
            raise
        finally:
            if not driver.closed:
                driver.autocommit = False
            fairy.close()

    def _run(self, name: str, params: Mapping[str, Any]) -> tuple[list[Any], int]:
        statement = self._sql[name]
        with self._cursor() as cursor:
            cursor.execute(statement.text, statement.args(params))
            # rownumber, not description: that builds a Column per column, each call
            rows = cursor.fetchall() if cursor.rownumber is not None else []
            return rows, cursor.rowcount

    def read_head(self, lease: Lease) -> BranchHead:
        rows, _ = self._run("read_head", _head_params(lease))
        return BranchHead.from_rows(rows, lease.branch_id)

    def stock_balance(self, branch_id: int, item_cd: str) -> Decimal | None:
        rows, _ = self._run("stock_balance", {"branch_id": branch_id, "item_cd": item_cd})
        return None if not rows else Decimal(rows[0].qty)

    def sale_past_stock(self, lease: Lease, job: HeadJob) -> StockOutDeferral:
        """On the driver's cursor: with merging on it runs once per sale that passes."""
        params = {"branch_id": lease.branch_id, "seq": job.seq, "job_id": job.id}
        rows, _ = self._run("sale_past_deferred_stock", params)
        return StockOutDeferral.from_rows(rows, lease.branch_id)

    def start(self, lease: Lease, start: Start, now: float) -> None:
        if start.merges:  # a carrier's first start: one transaction with its members
            super().start(lease, start, now)
            return
        if not self._run("pg_start_job", _start_params(lease, start, now))[1]:
            with self._single() as conn:
                _refused(conn, lease, now)

    def record(self, lease: Lease, record: JobRecord) -> Recorded:
        """An acceptance or a retry is one statement (an acceptance reads the next head
        along, and starts the next job when ``record.then`` says so); one that must look at
        dependents, a dead job or a park is a transaction (then the start follows it)."""
        write, job, attempt = record.write, record.job, record.attempt
        if attempt is None or not (
            isinstance(write, Retry)
            or (isinstance(write, Accept) and not job.wakes_dependents and not job.merged)
        ):
            return super().record(lease, record)
        params: dict[str, Any] = {**_fence(lease), "job_id": job.id, "now": record.now}
        params.update({f"a_{k}": v for k, v in _attempt_params(lease, job.id, attempt).items()})
        if isinstance(write, Retry):
            _fenced(self._run("pg_retry_job", {**params, **_retry_params(write)})[1])
            return Recorded(write.state)
        params.update(_accept_params(write))
        params.update(
            _head_params(lease),
            e_tin=job.tin,
            e_body=record.event,
            stock_items=[item for item, _ in write.stock],
            stock_qtys=[qty for _, qty in write.stock],
        )
        if record.then is None:
            rows, _ = self._run("pg_accept_job_reading_head", params)
        else:
            params.update(_next_start_params(lease, record.then, record.now))
            rows, _ = self._run("pg_accept_job_starting_next", params)
        _fenced(rows[0].accepted)
        head = BranchHead.from_rows(rows, lease.branch_id, job.id)
        started = record.then is not None and bool(rows[0].started)
        return Recorded(JobState.ACCEPTED, head=head, started=started)


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    """A named statement as PostgreSQL takes it, with ``$n`` placeholders: psycopg's raw
    cursor sends it as it is, where its usual cursor would turn ``%(name)s`` markers into
    ``$n`` on every call for a statement over 4 kB (it caches that only up to 4,096 bytes;
    ``accept_job_starting_next`` is 5.5 kB), about a tenth of the drain's CPU per job
    (bench/README.md, "the fused step")."""

    text: str
    #: the parameter of each ``$n``, in order
    names: tuple[str, ...]

    @classmethod
    def of(cls, clause: TextClause, dialect: Dialect) -> _DriverStatement:
        compiled = clause.compile(dialect=dialect)
        return cls(str(compiled), tuple(compiled.positiontup or ()))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


# ---------------------------------------------------------------------- parameters


_KILL: Mapping[str, str] = {
    "keep": "kill_job",
    "rebuild": "kill_job_dropping_body",
    "release": "kill_job_releasing_number",
}
_PARK: Mapping[str, str] = {
    "keep": "park_job_keeping_body",
    "rebuild": "park_job_rebuilding_body",
    "release": "park_job_releasing_number",
}
_STATE_OF: Mapping[type, JobState] = {
    Accept: JobState.ACCEPTED, Kill: JobState.DEAD, Park: JobState.PENDING,
}  # fmt: skip
_GIVE_BACK = {"invcNo": "give_back_invc_no", "sarNo": "give_back_sar_no"}


def _head_params(lease: Lease) -> dict[str, Any]:
    return {"branch_id": lease.branch_id}


def _job_statement(write: Accept | Retry | Kill | Park) -> tuple[str, dict[str, Any]]:
    """The named statement that writes the job's new state, and its own parameters."""
    match write:
        case Accept():
            return "accept_job", _accept_params(write)
        case Retry():
            return "retry_job", _retry_params(write)
        case Kill():
            values = {"result_code": write.result_code, "result_message": write.result_message}
            return _KILL[write.body], values
        case Park():
            return _PARK[write.body], {}
    raise TypeError(write)


def _fence(lease: Lease) -> dict[str, Any]:
    return {"branch_id": lease.branch_id, "token": lease.token}


def _fenced(rowcount: int) -> None:
    if rowcount == 0:
        raise LeaseLost


def _started(conn: Connection, lease: Lease, start: Start, now: float) -> bool:
    """A start's writes, all or none: the branch row (the lease live, the counter as read),
    then the job (as read), then the stock-outs a carrier's send merges. False: refused,
    nothing written."""
    params = _start_params(lease, start, now)
    with conn.begin_nested() as savepoint:
        if conn.execute(_DRAIN["claim_branch_for_start"], params).rowcount:
            if conn.execute(_DRAIN["start_job"], params).rowcount and _merged(conn, start, params):
                return True
            savepoint.rollback()  # the job moved on: take the branch's write back
    return False


def _merged(conn: Connection, start: Start, params: Mapping[str, Any]) -> bool:
    """A first start: stock-outs left merged into the job by a send whose body is gone go
    back to pending (``release_leftover_members``); then, for a carrier, every stock-out
    joining its send is marked, or none is."""
    if start.body is not None:
        conn.execute(_DRAIN["release_leftover_members"], params)
    for member in start.merges:
        merge = {**params, "job_id": member, "carrier_id": start.job_id}
        if not conn.execute(_DRAIN["merge_into_carrier"], merge).rowcount:
            return False
    return True


def _first(head: BranchHead, start: Start) -> bool:
    return bool(head.jobs) and head.jobs[0].id == start.job_id


def _refused(conn: Connection, lease: Lease, now: float) -> NoReturn:
    """A start, block or supersede wrote nothing: say why. The lease taken over or run out,
    else what the head read showed (the job, or the counter it takes a number from) has
    moved on."""
    params = {**_fence(lease), "now": now}
    if not conn.execute(_LEASE["lease_holds"], params).scalar():
        raise LeaseLost
    raise HeadMoved


def _start_params(lease: Lease, start: Start, now: float) -> dict[str, Any]:
    takes = start.takes
    return {
        **_fence(lease),
        "job_id": start.job_id,
        "attempts": start.attempt,
        "maybe_recorded": start.maybe_recorded,
        "body": start.body,
        "counter": None if takes is None else takes.counter,
        "number": None if takes is None else takes.value,
        "invc_no": _value_of(takes, "invcNo"),
        "sar_no": _value_of(takes, "sarNo"),
        "lease_until": start.lease_until,
        "read_state": start.read_state.value,
        "read_invc_no": start.read_invc_no,
        "read_sar_no": start.read_sar_no,
        "now": now,
    }


def _next_start_params(lease: Lease, start: Start, now: float) -> dict[str, Any]:
    """The start's parameters, ``n_``-prefixed, beside the acceptance's (same fence, same now)."""
    params = _start_params(lease, start, now)
    return {f"n_{k}": v for k, v in params.items() if k not in ("branch_id", "token", "now")}


def _value_of(number: Number | None, counter: Counter) -> int | None:
    return number.value if number is not None and number.counter == counter else None


def _accept_params(write: Accept) -> dict[str, Any]:
    return {
        "result_code": write.result_code,
        "result_message": write.result_message,
        "receipt": write.receipt,
        "receipt_missing": write.receipt_missing,
        "qr_url": write.qr_url,
        "sdc_id": write.sdc_id,
        "mrc_no": write.mrc_no,
    }


def _retry_params(write: Retry) -> dict[str, Any]:
    return {
        "state": write.state.value,
        "next_attempt_at": write.next_attempt_at,
        "maybe_recorded": write.maybe_recorded,
        "result_code": write.result_code,
        "result_message": write.result_message,
    }


def _attempt_params(lease: Lease, job_id: int, attempt: AttemptRow) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "number": attempt.number,
        "kra_number": attempt.kra_number,
        "started_at": attempt.started_at,
        "latency_s": attempt.latency_s,
        "outcome": attempt.outcome,
        "result_code": attempt.result_code,
        "message": attempt.message,
        "http_status": attempt.http_status,
        "error": attempt.error,
        "request_hash": attempt.request_hash,
        "fencing_token": lease.token,
        "worker": attempt.worker,
    }


def _insert_event(
    conn: Connection, job: HeadJob | EventJob, state: JobState, now: float, body: str
) -> None:
    params = {
        "job_id": job.id,
        "tin": job.tin,
        "state": state.value,
        "body": body,
        "created_at": now,
    }
    conn.execute(_DRAIN["insert_event"], params)


def _carrier_alone(job: HeadJob) -> HeadJob:
    """The carrier as one job, once its members' part is written (its own result then
    follows the path of any job)."""
    return replace(job, merged=())


def _end_members(
    conn: Connection, lease: Lease, record: JobRecord
) -> tuple[frozenset[int], tuple[EndedMember, ...]]:
    """A carrier's result, for the stock-outs it carries (same transaction): accepted with
    its sarNo (their dependents wake) or dead with its words (their dependents are blocked).
    Only the ones this send carried (``job.merged``); a row merged into the job that it did
    not carry goes back to pending. A retry, an unknown outcome or a park that keeps the body
    leaves them waiting on it; a park that drops the body lets them go
    (``dissolve_members``). Returns the branches to wake and the stock-outs that ended (what
    the drain's observer counts)."""
    job, now, write = record.job, record.now, record.write
    if isinstance(write, Park) and write.body != "keep":
        params = {**_fence(lease), "job_id": job.id, "now": now}
        conn.execute(_DRAIN["dissolve_members"], params)
        return frozenset(), ()
    if isinstance(write, Accept):
        state, statement = JobState.ACCEPTED, "accept_member"
        values = {"result_code": write.result_code, "result_message": write.result_message}
    elif isinstance(write, Kill):
        state, statement = JobState.DEAD, "kill_member"
        values = {"result_code": write.result_code, "result_message": write.result_message}
    else:
        return frozenset(), ()
    # only the stock-outs this very send carried (job.merged, read with the body it sent):
    # a row merged into the job that its body does not carry never ends with it
    carried = set(job.merged)
    members = [
        m
        for m in conn.execute(
            _DRAIN["members_in_state"], {"job_id": job.id, "state": JobState.MERGED.value}
        )
        if int(m.id) in carried
    ]
    params = {**_fence(lease), "job_id": job.id, "now": now, **values}
    woken: set[int] = set()
    for member in members:
        conn.execute(_DRAIN[statement], {**params, "member_id": int(member.id)})
        event = EventJob(int(member.id), str(member.idempotency_key), str(member.kind), job.tin)
        code, message = values["result_code"], values["result_message"]
        body = json.loads(event_json(event, state, now, result_code=code, result_message=message))
        # what a webhook consumer follows: the send that carried it, and its number
        body.update(merged_into=job.id, sar_no=member.carrier_sar_no)
        _insert_event(conn, event, state, now, json.dumps(body, default=str))
        if state is JobState.ACCEPTED:
            woken |= wake_dependents(conn, event.id, lease.branch_id, now)
    # a stock-out merged into the job that this send did not carry goes back to pending: the
    # backstop for a path that dropped the carrier's body without releasing its members
    conn.execute(_DRAIN["dissolve_members"], params)
    if state is JobState.DEAD:
        woken |= block_dependents(conn, [int(m.id) for m in members], now)
    ended = tuple(
        EndedMember(int(m.id), str(m.idempotency_key), float(m.created_at)) for m in members
    )
    return frozenset(woken), ended


def _give_back(conn: Connection, lease: Lease, number: Number | None) -> None:
    if number is not None:
        params = {**_fence(lease), "number": number.value}
        conn.execute(_DRAIN[_GIVE_BACK[number.counter]], params)
