"""The statements of the branches, the lease and the drain, one named function each (the
other areas have their own modules: see :mod:`worker.outbox`).

Each function takes a ``Connection`` inside a transaction the caller opened
(``with engine.begin() as conn``), so a caller composes several statements into one atomic
step. Statements that the drain issues while holding a branch lease carry the fencing check
(branch id and fencing token) in their WHERE clause: a worker whose lease was taken over
writes nothing, and learns it from the row count (:class:`LeaseLost`).

The statements the drain runs for every job are plain SQL text executed through
:mod:`worker.outbox.hot` (the driver's cursor, same transaction); the rest is SQLAlchemy Core.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    case,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from schemas.jobs import ACTIVE_STATES, JobState
from worker.outbox import hot
from worker.outbox.models import (
    ACTIVE_PREDICATE,
    attempts,
    branches,
    job_dependencies,
    jobs,
    result_events,
    stock_balances,
)

ACTIVE = [s.value for s in ACTIVE_STATES]
#: A dependency in one of these states can never be satisfied without an operator.
HOPELESS = [JobState.DEAD.value, JobState.BLOCKED.value, JobState.SKIPPED.value]


class LeaseLost(Exception):
    """The fencing token moved on: another worker owns the branch now. Write nothing more."""


class CounterMoved(Exception):
    """The branch's next invcNo/sarNo is not the one the head query read: an operator set it
    (``branch set-next``) in between. Nothing was written; read the head again."""


@dataclass(frozen=True, slots=True)
class Lease:
    branch_id: int
    token: int
    owner: str


# --------------------------------------------------------------------------- helpers


def _insert_ignore(
    conn: Connection, table: Any, values: Mapping[str, Any], keys: list[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on either backend."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    conn.execute(dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=keys))


metadata_tables = {t.name: t for t in (attempts, result_events, jobs)}


def _check(rowcount: int) -> None:
    if rowcount == 0:
        raise LeaseLost


# --------------------------------------------------------------------------- branches


def ensure_branch(conn: Connection, tin: str, bhf_id: str, now: float) -> int:
    """Return the branch id of (tin, bhf_id), creating the row on first use."""
    found = conn.execute(
        select(branches.c.id).where(branches.c.tin == tin, branches.c.bhf_id == bhf_id)
    ).scalar()
    if found is not None:
        return int(found)
    _insert_ignore(
        conn,
        branches,
        {
            "tin": tin,
            "bhf_id": bhf_id,
            "next_seq": 1,
            "next_invc_no": 1,
            "next_sar_no": 1,
            "fencing_token": 0,
            "created_at": now,
        },
        ["tin", "bhf_id"],
    )
    return int(
        conn.execute(
            select(branches.c.id).where(branches.c.tin == tin, branches.c.bhf_id == bhf_id)
        ).scalar_one()
    )


def reserve_seq(conn: Connection, branch_id: int, count: int, now: float) -> int:
    """Reserve ``count`` consecutive seq numbers; return the first. Marks the branch due.

    The UPDATE locks the branch row until commit, so seq order equals commit order and a
    drain never sees a lower seq appear behind one it already sent.
    """
    new_next = conn.execute(
        update(branches)
        .where(branches.c.id == branch_id)
        .values(
            next_seq=branches.c.next_seq + count,
            wake_after=case(
                (or_(branches.c.wake_after.is_(None), branches.c.wake_after > now), now),
                else_=branches.c.wake_after,
            ),
        )
        .returning(branches.c.next_seq)
    ).scalar_one()
    return int(new_next) - count


def wake_branches(conn: Connection, branch_ids: Iterable[int], now: float) -> None:
    """Mark branches due now (the sweeper wakes them if no message does)."""
    ids = sorted(set(branch_ids))
    if not ids:
        return
    conn.execute(
        update(branches)
        .where(
            branches.c.id.in_(ids),
            or_(branches.c.wake_after.is_(None), branches.c.wake_after > now),
        )
        .values(wake_after=now)
    )


def get_branch(
    conn: Connection, tin: str, bhf_id: str, *, for_update: bool = False
) -> Row[Any] | None:
    """``for_update``: lock the row (PostgreSQL) so no drain claims the branch meanwhile."""
    query = select(branches).where(branches.c.tin == tin, branches.c.bhf_id == bhf_id)
    return conn.execute(query.with_for_update() if for_update else query).first()


def set_branch_counters(
    conn: Connection, branch_id: int, *, invc_no: int | None, sar_no: int | None, now: float
) -> None:
    """Operator action: set KRA's next numbers and unpark the branch."""
    values: dict[str, Any] = {"parked_reason": None, "parked_at": None, "wake_after": now}
    if invc_no is not None:
        values["next_invc_no"] = invc_no
        values["kra_expected_invc_no"] = None
    if sar_no is not None:
        values["next_sar_no"] = sar_no
        values["kra_expected_sar_no"] = None
    conn.execute(update(branches).where(branches.c.id == branch_id).values(**values))


def due_branches(conn: Connection, now: float, limit: int) -> list[int]:
    """Branches the sweeper must wake: due, not parked, lease free or expired."""
    rows = conn.execute(
        select(branches.c.id)
        .where(
            branches.c.wake_after <= now,
            branches.c.parked_reason.is_(None),
            or_(branches.c.lease_until.is_(None), branches.c.lease_until < now),
        )
        .order_by(branches.c.wake_after)
        .limit(limit)
    )
    return [int(r[0]) for r in rows]


# --------------------------------------------------------------------------- lease


def claim_lease(
    conn: Connection, branch_id: int, owner: str, now: float, ttl: float
) -> Lease | None:
    """Take the branch if its lease is free or expired; bump the fencing token."""
    token = conn.execute(
        update(branches)
        .where(
            branches.c.id == branch_id,
            branches.c.parked_reason.is_(None),
            or_(branches.c.lease_until.is_(None), branches.c.lease_until < now),
        )
        .values(
            lease_owner=owner,
            lease_until=now + ttl,
            fencing_token=branches.c.fencing_token + 1,
        )
        .returning(branches.c.fencing_token)
    ).scalar()
    return None if token is None else Lease(branch_id, int(token), owner)


def release_lease(
    conn: Connection, lease: Lease, *, wake_after: float | None, seen_next_seq: int | None
) -> bool:
    """Give the branch back and record when it is next due.

    Setting ``wake_after`` (possibly to NULL, "idle") only sticks if no job was enqueued since
    the drain last looked (``next_seq`` unchanged); otherwise the branch stays due now. Returns
    False when new work arrived, so the caller re-wakes it.
    """
    same_work = (
        branches.c.next_seq == seen_next_seq
        if seen_next_seq is not None
        else branches.c.id.is_not(None)
    )
    released = conn.execute(
        update(branches)
        .where(branches.c.id == lease.branch_id, branches.c.fencing_token == lease.token, same_work)
        .values(lease_owner=None, lease_until=None, wake_after=wake_after)
    ).rowcount
    if released:
        return True
    conn.execute(
        update(branches)
        .where(branches.c.id == lease.branch_id, branches.c.fencing_token == lease.token)
        .values(lease_owner=None, lease_until=None)
    )
    return False


def park_branch(
    conn: Connection,
    lease: Lease,
    reason: str,
    now: float,
    expected: tuple[str, int] | None = None,
) -> None:
    """Stop sending for this branch until an operator acts (set-next, skip, unpark);
    ``expected``: (counter, number) KRA said it expects next, kept for set-next."""
    values: dict[str, Any] = {"parked_reason": reason, "parked_at": now}
    if expected is not None:
        values[_EXPECTED_COLUMNS[expected[0]]] = expected[1]
    _check(
        conn.execute(
            update(branches)
            .where(branches.c.id == lease.branch_id, branches.c.fencing_token == lease.token)
            .values(**values)
        ).rowcount
    )


_EXPECTED_COLUMNS = {"invcNo": "kra_expected_invc_no", "sarNo": "kra_expected_sar_no"}


def unpark(conn: Connection, branch_id: int, now: float) -> None:
    """Operator action: let the branch drain again (the cause of its park is fixed)."""
    conn.execute(
        update(branches)
        .where(branches.c.id == branch_id)
        .values(parked_reason=None, parked_at=None, wake_after=now)
    )


def give_back_number(conn: Connection, branch_id: int, counter: str, number: int) -> bool:
    """Operator skip of a job no attempt of which may have reached KRA: hand its number to
    the next job, if nothing was allocated after it."""
    column = branches.c.next_invc_no if counter == "invcNo" else branches.c.next_sar_no
    return bool(
        conn.execute(
            update(branches)
            .where(branches.c.id == branch_id, column == number + 1)
            .values({column: number})
        ).rowcount
    )


def numbers_held(conn: Connection, branch_id: int, counter: str) -> list[Any]:
    """Jobs of the branch still to go that already hold a KRA number of ``counter``."""
    column = jobs.c.invc_no if counter == "invcNo" else jobs.c.sar_no
    return list(
        conn.execute(
            select(
                jobs.c.id, jobs.c.idempotency_key, jobs.c.state, jobs.c.maybe_recorded,
                column.label("number"),
            ).where(
                jobs.c.branch_id == branch_id,
                jobs.c.state.in_(ACTIVE),
                column.is_not(None),
            )
        )
    )  # fmt: skip


def drop_unsent_numbers(conn: Connection, job_ids: Sequence[int], counter: str) -> None:
    """These jobs never reached KRA with their number: they take a fresh one (and body)."""
    if job_ids:
        field = "invc_no" if counter == "invcNo" else "sar_no"
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(list(job_ids)), jobs.c.maybe_recorded.is_(False))
            .values({field: None, "body": None})
        )


def jobs_with_trader_invoice(
    conn: Connection, tin: str, trd_invc_no: str, *, exclude_id: int
) -> list[Any]:
    """Our other sales and credit notes of ``tin`` carrying ``trd_invc_no`` (the column enqueue
    fills for every sale and credit note, indexed by ``ix_jobs_tin_trd_invc_no``)."""
    return list(
        conn.execute(
            select(jobs.c.id, jobs.c.idempotency_key, jobs.c.state)
            .where(
                jobs.c.tin == tin,
                jobs.c.trd_invc_no == trd_invc_no,
                jobs.c.id != exclude_id,
            )
            .order_by(jobs.c.id)
        )
    )


def release_number(conn: Connection, lease: Lease, counter: str, number: int) -> None:
    """Hand a number back after a definitive rejection, if nothing was allocated after it."""
    column = branches.c.next_invc_no if counter == "invcNo" else branches.c.next_sar_no
    conn.execute(
        update(branches)
        .where(
            branches.c.id == lease.branch_id,
            branches.c.fencing_token == lease.token,
            column == number + 1,
        )
        .values({column: number})
    )


# --------------------------------------------------------------------------- enqueue


def find_jobs_by_keys(conn: Connection, tin: str, keys: Sequence[str]) -> dict[str, Row[Any]]:
    """Existing jobs of ``tin`` with these idempotency keys."""
    if not keys:
        return {}
    found: dict[str, Row[Any]] = {}
    unique = sorted(set(keys))
    for start in range(0, len(unique), 500):
        rows = conn.execute(
            select(
                jobs.c.id,
                jobs.c.idempotency_key,
                jobs.c.payload_hash,
                jobs.c.state,
                jobs.c.kind,
                jobs.c.branch_id,
                jobs.c.bhf_id,
            ).where(jobs.c.tin == tin, jobs.c.idempotency_key.in_(unique[start : start + 500]))
        )
        found.update({r.idempotency_key: r for r in rows})
    return found


def insert_jobs(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert jobs in the given order; return their ids in the same order.

    Multi-row INSERTs on the driver (a batch of 100 went through SQLAlchemy's per-row
    parameter processing at a quarter of enqueue's CPU); rows are matched back to their ids
    by (tin, idempotency_key), unique per job.
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    _known(jobs, columns)
    ids: dict[tuple[str, str], int] = {}
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        for r in hot.insert_rows(conn, "jobs", columns, chunk, "id, tin, idempotency_key"):
            ids[(r.tin, r.idempotency_key)] = int(r.id)
    return [ids[(row["tin"], row["idempotency_key"])] for row in rows]


#: Rows per INSERT: 15 columns x 500 = 7,500 parameters, well under either driver's limit.
_INSERT_CHUNK = 500


def insert_dependencies(conn: Connection, pairs: Sequence[tuple[int, int]]) -> None:
    if pairs:
        conn.execute(
            insert(job_dependencies),
            [{"job_id": a, "depends_on_id": b} for a, b in pairs],
        )


# --------------------------------------------------------------------------- drain


#: What the drain reads of a head job (not the whole row: results, receipts and the like are
#: never needed to send one).
_HEAD_COLUMNS = (
    "id, tin, bhf_id, seq, kind, idempotency_key, payload, original_job_id, state, attempts, "
    "next_attempt_at, maybe_recorded, invc_no, sar_no, body, created_at"
)


@dataclass(frozen=True, slots=True)
class BranchHead:
    """One read of a branch for the drain: its counters and its first active jobs."""

    #: ``next_seq`` from the same snapshot as the jobs, so "no job at or past next_seq was
    #: seen" holds when the drain later releases the branch with it.
    next_seq: int
    #: KRA's next number per counter ("invcNo", "sarNo") as the branch row had it: what a
    #: job allocating now will get, unless an operator moves it first (:class:`CounterMoved`).
    next_numbers: Mapping[str, int]
    #: the first active jobs in seq order (the first is the head), each with the (id, state)
    #: of the jobs it depends on
    candidates: list[tuple[Row[Any], list[tuple[int, str]]]]


def head_candidates(conn: Connection, branch_id: int, limit: int) -> BranchHead:
    """The branch's counters and its first ``limit`` active jobs, in one query."""
    rows, _ = hot.run(conn, head_query(limit), {"branch_id": branch_id})
    return _branch_head(rows, branch_id)


def _branch_head(rows: list[Any], branch_id: int, accepted_id: int | None = None) -> BranchHead:
    """Group the head select's rows (one per job and dependency). ``accepted_id``: a job the
    same statement accepted, which its snapshot still shows in its old state."""
    if not rows:
        raise LookupError(f"no branch {branch_id}")
    grouped: dict[int, tuple[Row[Any], list[tuple[int, str]]]] = {}
    for row in rows:
        if row.id is None:
            continue
        entry = grouped.setdefault(row.id, (row, []))
        if row.dep_id is not None:
            dep_id = int(row.dep_id)
            state = JobState.ACCEPTED.value if dep_id == accepted_id else str(row.dep_state)
            entry[1].append((dep_id, state))
    first = rows[0]
    numbers = {"invcNo": int(first.branch_next_invc_no), "sarNo": int(first.branch_next_sar_no)}
    return BranchHead(int(first.branch_next_seq), numbers, list(grouped.values()))


#: Whether accepting this job must look at its dependents: some wait in another branch (wake
#: it) or are blocked (after a replay: unblock them). Dependents later in the same branch
#: need nothing: this drain reaches them in order. A dependent enqueued after this read is
#: missed here, and found by its own branch's periodic re-check (DEPENDENCY_WAIT_S).
_WAKES_DEPENDENTS = (
    "EXISTS (SELECT 1 FROM job_dependencies AS wd JOIN jobs AS wj ON wj.id = wd.job_id "  # noqa: S608
    f"WHERE wd.depends_on_id = w.id AND (wj.branch_id <> :branch_id OR wj.state = "
    f"'{JobState.BLOCKED.value}'))"
)


@functools.lru_cache(maxsize=8)
def head_query(limit: int) -> hot.HotStatement:
    """Written out so that the state list is literal: only then can the planner (PostgreSQL
    with a generic prepared plan, SQLite) use the partial index ``ix_jobs_branch_active_seq``
    and stop at the first entries instead of walking the branch's accepted history."""
    return hot.HotStatement(_head_select(limit))


def _head_select(
    limit: int, *, but_written_job: bool = False, but_started_job: bool = False
) -> str:
    """The head query's text (parameter ``:branch_id``); with ``but_written_job``, leaving
    out the job ``:job_id_`` of the statement it rides on, with ``but_started_job`` the job
    ``:n_job_id`` that statement marks in_flight too."""
    excluded = "AND id <> :job_id_ " if but_written_job else ""
    if but_started_job:
        excluded += "AND id <> :n_job_id "
    return (
        f"SELECT b.next_seq AS branch_next_seq, b.next_invc_no AS branch_next_invc_no, "  # noqa: S608
        f"b.next_sar_no AS branch_next_sar_no, w.*, dep.id AS dep_id, dep.state AS dep_state, "
        f"{_WAKES_DEPENDENTS} AS wakes_dependents "
        f"FROM branches AS b "
        f"LEFT JOIN (SELECT {_HEAD_COLUMNS} FROM jobs "
        f"WHERE branch_id = :branch_id AND {ACTIVE_PREDICATE} {excluded}"
        f"ORDER BY seq LIMIT {int(limit)}) AS w ON 1 = 1 "
        f"LEFT JOIN job_dependencies AS d ON d.job_id = w.id "
        f"LEFT JOIN jobs AS dep ON dep.id = d.depends_on_id "
        f"WHERE b.id = :branch_id "
        f"ORDER BY w.seq"
    )


def dependency_states(conn: Connection, job_id: int) -> list[Row[Any]]:
    """(id, state, branch_id) of each job ``job_id`` depends on."""
    return list(
        conn.execute(
            select(jobs.c.id, jobs.c.state, jobs.c.branch_id)
            .join(job_dependencies, job_dependencies.c.depends_on_id == jobs.c.id)
            .where(job_dependencies.c.job_id == job_id)
        )
    )


@dataclass(frozen=True, slots=True)
class BranchWrite:
    """What a job's write also changes on its branch row, under the same fence: the lease
    pushed out to ``lease_until`` and/or KRA's next ``counter`` number taken, compare-and-set
    on ``number``, the value the head query read (so the body could be built with it first).
    """

    lease_until: float | None = None
    counter: str | None = None
    number: int | None = None

    def sets(self) -> tuple[str, ...]:
        names: tuple[str, ...] = ("lease_until",) if self.lease_until is not None else ()
        if self.counter is not None:
            names += (_COUNTER_COLUMNS[self.counter],)
        return names


_COUNTER_COLUMNS = {"invcNo": "next_invc_no", "sarNo": "next_sar_no"}


@dataclass(frozen=True, slots=True)
class NextStart:
    """The next job's in_flight mark, riding on the statement that records an acceptance.

    The drain builds the next job's body while the branch's head is still the job being
    accepted, from the head it read one statement earlier; the statement then checks, in
    its own snapshot, everything a fresh head read would have: the job is still ``pending``
    with no body, no active job of the branch but the accepted one comes before it, and
    every job it depends on is accepted or is the accepted one. Only then does it take the
    number (compare-and-set, :class:`BranchWrite`) and mark the job; otherwise it writes
    nothing of it, and the drain reads the head again.
    """

    job_id: int
    values: Mapping[str, Any]
    branch: BranchWrite | None = None

    def bind(self, params: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Add its parameters; return the job columns and branch columns it sets."""
        params.update({"n_" + k: v for k, v in self.values.items()})
        params["n_job_id"] = self.job_id
        if self.branch is None:
            return tuple(self.values), ()
        params.update(b_lease_until=self.branch.lease_until, b_number=self.branch.number)
        return tuple(self.values), self.branch.sets()


def update_job_fenced(
    conn: Connection,
    lease: Lease,
    job_id: int,
    values: Mapping[str, Any],
    *,
    attempt: Mapping[str, Any] | None = None,
    event: Mapping[str, Any] | None = None,
    branch: BranchWrite | None = None,
    stock: Mapping[str, Decimal] | None = None,
    then_head: int | None = None,
    then_start: NextStart | None = None,
) -> BranchHead | None:
    """Write a job's new state, only while ``lease`` holds; with it, optionally, the attempt
    row of the call that led to it, the result event it emits, a :class:`BranchWrite` and an
    accepted movement's quantities per item (added to the branch's stock balances).

    ``then_head``: also read the branch's head (that many candidates) as it stands after the
    write, and return it. On PostgreSQL that rides on the same statement, saving the drain
    a round trip per job: its snapshot predates the write, so the written job is left out
    of the candidates, and a dependency on it counts as accepted (only an acceptance may ask
    for the head this way; it takes no :class:`BranchWrite`).

    ``then_start`` (PostgreSQL, with ``then_head``): the next job's in_flight mark rides on
    the statement too (:class:`NextStart`), saving the drain its other round trip per job.
    The head returned then leaves that job out as well; ``None`` means the mark was not
    made (the job's result was), and the head must be read again.

    On PostgreSQL all of it is one statement: the fence (the branch UPDATE of a
    :class:`BranchWrite`, which also locks the branch row before the job row as every drain
    write does, or else a read of the token) is a CTE every other part selects from, so a
    refused fence writes nothing at all, even with no transaction around the statement
    (the drain's autocommit steps). A job's step is one round trip instead of up to six.
    A refused fence raises :class:`LeaseLost` (or :class:`CounterMoved`).
    """
    params: dict[str, Any] = {
        **values,
        "job_id_": job_id,
        "lease_branch_id": lease.branch_id,
        "lease_token": lease.token,
        "branch_id": lease.branch_id,  # the head select's, when it rides along
    }
    branch_sets: tuple[str, ...] = ()
    if branch is not None:
        branch_sets = branch.sets()
        params.update(b_lease_until=branch.lease_until, b_number=branch.number)
    if then_head is not None and (
        branch is not None or values.get("state") != JobState.ACCEPTED.value
    ):
        raise ValueError("only an acceptance without a branch write reads the head along")
    start_columns: tuple[str, ...] = ()
    start_branch_sets: tuple[str, ...] = ()
    if then_start is not None:
        if then_head is None or conn.dialect.name != "postgresql":
            raise ValueError("the next job's mark rides only on a PostgreSQL head read")
        start_columns, start_branch_sets = then_start.bind(params)
    if conn.dialect.name != "postgresql":
        _update_job_stepwise(conn, lease, params, tuple(values), attempt, event, branch, stock)
        return None if then_head is None else head_candidates(conn, lease.branch_id, then_head)
    for prefix, extra in (("a_", attempt), ("e_", event)):
        if extra is not None:
            params.update({prefix + k: v for k, v in extra.items()})
    for i, (item_cd, qty) in enumerate((stock or {}).items()):
        params[f"s{i}_item"], params[f"s{i}_qty"] = item_cd, qty
    statement = _update_job_fenced(
        tuple(values),
        tuple(attempt) if attempt is not None else (),
        tuple(event) if event is not None else (),
        branch_sets,
        len(stock or ()),
        then_head or 0,
        start_columns,
        start_branch_sets,
    )
    rows, rowcount = hot.run(conn, statement, params)
    if then_head is None:
        if not rowcount:
            _fence_refused(conn, lease, branch)
        return None
    if not rows or not rows[0].wrote:
        _fence_refused(conn, lease, branch)
    if then_start is not None and not rows[0].started:
        return None
    return _branch_head(rows, lease.branch_id, accepted_id=job_id)


def _update_job_stepwise(
    conn: Connection,
    lease: Lease,
    params: Mapping[str, Any],
    columns: tuple[str, ...],
    attempt: Mapping[str, Any] | None,
    event: Mapping[str, Any] | None,
    branch: BranchWrite | None,
    stock: Mapping[str, Decimal] | None,
) -> None:
    """:func:`update_job_fenced` as one statement per part (SQLite, where the caller's
    transaction, under the database's single write lock, makes them one)."""
    if branch is not None and branch.sets():
        if not hot.run(conn, _update_branch_fenced(branch.sets()), params)[1]:
            _fence_refused(conn, lease, branch)
    if attempt is not None:
        insert_attempt(conn, attempt)
    _check(hot.run(conn, _update_job_fenced(columns), params)[1])
    if event is not None:
        insert_event(conn, event)
    if stock:
        add_stock(conn, lease.branch_id, stock)


def _fence_refused(conn: Connection, lease: Lease, branch: BranchWrite | None) -> None:
    """Nothing was written: say why. Only a write that took a number can have been refused
    for the counter; any other refusal is the lease's."""
    if branch is None or branch.counter is None:
        raise LeaseLost
    token = hot.run(conn, _FENCING_TOKEN, {"branch_id": lease.branch_id})[0]
    if not token or int(token[0].fencing_token) != lease.token:
        raise LeaseLost
    raise CounterMoved


_FENCING_TOKEN = hot.HotStatement("SELECT fencing_token FROM branches WHERE id = :branch_id")


@functools.lru_cache(maxsize=8)
def _update_branch_fenced(sets: tuple[str, ...]) -> hot.HotStatement:
    """The fenced branch UPDATE of a :class:`BranchWrite` (a counter is compare-and-set)."""
    assignments = []
    guard = ""
    for column in sets:
        if column == "lease_until":
            assignments.append("lease_until = :b_lease_until")
        else:
            _known(branches, (column,))
            assignments.append(f"{column} = {column} + 1")
            guard = f" AND {column} = :b_number"
    return hot.HotStatement(
        f"UPDATE branches SET {', '.join(assignments)} "  # noqa: S608 - schema names
        f"WHERE id = :lease_branch_id AND fencing_token = :lease_token{guard}"
    )


@functools.lru_cache(maxsize=64)
def _update_job_fenced(
    columns: tuple[str, ...],
    attempt_columns: tuple[str, ...] = (),
    event_columns: tuple[str, ...] = (),
    branch_sets: tuple[str, ...] = (),
    stock_items: int = 0,
    head_window: int = 0,
    start_columns: tuple[str, ...] = (),
    start_branch_sets: tuple[str, ...] = (),
) -> hot.HotStatement:
    """The job UPDATE of exactly these columns (one statement per combination the drain uses).

    Alone (SQLite runs the other parts as their own statements) it is fenced by reading the
    token. With CTEs (PostgreSQL) every part selects from the ``fence`` CTE. Parameters in a
    SELECT list have no type to infer, hence a CAST to each column's type (without its
    length: an explicit cast to VARCHAR(n) would truncate where the INSERT refuses).
    ``head_window``: the UPDATE becomes a CTE too, and the statement returns the head select
    (without the job) with ``wrote``, whether the fenced UPDATE happened.
    ``start_columns``: the next job's in_flight mark too (:class:`NextStart`), and
    ``started``, whether it was made.
    """
    _known(jobs, columns)
    sets = ", ".join(f"{c} = :{c}" for c in columns)
    if not (attempt_columns or event_columns or branch_sets or stock_items or head_window):
        return hot.HotStatement(
            f"UPDATE jobs SET {sets} WHERE id = :job_id_ AND EXISTS (SELECT 1 FROM branches "  # noqa: S608
            "WHERE branches.id = :lease_branch_id AND branches.fencing_token = :lease_token)"
        )
    if branch_sets:
        fence = f"{_update_branch_fenced(branch_sets).source} RETURNING 1 AS ok"
    else:
        fence = (
            "SELECT 1 AS ok FROM branches "
            "WHERE id = :lease_branch_id AND fencing_token = :lease_token"
        )
    ctes = [f"fence AS ({fence})"]
    for name, table, cols, prefix in (
        ("attempt", attempts, attempt_columns, "a_"),
        ("event", result_events, event_columns, "e_"),
    ):
        if cols:
            _known(table, cols)
            selected = ", ".join(_cast(table, c, f":{prefix}{c}") for c in cols)
            ctes.append(
                f"{name} AS (INSERT INTO {table.name} ({', '.join(cols)}) "  # noqa: S608 - schema names
                f"SELECT {selected} FROM fence)"
            )
    if stock_items:
        rows = ", ".join(
            f"({_cast(stock_balances, 'item_cd', f':s{i}_item')}, "
            f"{_cast(stock_balances, 'qty', f':s{i}_qty')})"
            for i in range(stock_items)
        )
        branch_id = _cast(stock_balances, "branch_id", ":lease_branch_id")
        ctes.append(
            "stock AS (INSERT INTO stock_balances (branch_id, item_cd, qty) "  # noqa: S608 - schema names
            f"SELECT {branch_id}, v.item_cd, v.qty FROM fence, (VALUES {rows}) AS v (item_cd, qty) "
            "ON CONFLICT (branch_id, item_cd) "
            "DO UPDATE SET qty = stock_balances.qty + EXCLUDED.qty)"
        )
    update = f"UPDATE jobs SET {sets} WHERE id = :job_id_ AND EXISTS (SELECT 1 FROM fence)"  # noqa: S608
    if head_window:
        ctes.append(f"done AS ({update} RETURNING 1 AS ok)")
        flags = "(SELECT count(*) FROM done) AS wrote, "
        if start_columns:
            ctes.extend(_next_start_ctes(start_columns, start_branch_sets))
            flags += "(SELECT count(*) FROM started) AS started, "
        head = _head_select(head_window, but_written_job=True, but_started_job=bool(start_columns))
        return hot.HotStatement(
            f"WITH {', '.join(ctes)} " + head.replace("SELECT ", f"SELECT {flags}", 1),
            returns_rows=True,
        )
    return hot.HotStatement(f"WITH {', '.join(ctes)} {update}", returns_rows=False)


def _next_start_ctes(columns: tuple[str, ...], branch_sets: tuple[str, ...]) -> list[str]:
    """The CTEs of a :class:`NextStart` (parameters ``:n_<column>``, ``:n_job_id``).

    ``ready`` re-checks in the statement's snapshot what made the drain pick the job; the
    number is taken (``claim``) only if it is ready, and the job is marked only if the
    number was taken: all of it, or none of it.
    """
    _known(jobs, columns)
    pending = JobState.PENDING.value
    ready = (
        "ready AS (SELECT 1 AS ok FROM jobs AS s "  # noqa: S608 - schema names
        f"WHERE s.id = :n_job_id AND s.branch_id = :lease_branch_id AND s.state = '{pending}' "
        "AND s.body IS NULL AND EXISTS (SELECT 1 FROM fence) "
        "AND NOT EXISTS (SELECT 1 FROM jobs AS e WHERE e.branch_id = :lease_branch_id "
        f"AND e.{ACTIVE_PREDICATE} AND e.seq < s.seq AND e.id <> :job_id_) "
        "AND NOT EXISTS (SELECT 1 FROM job_dependencies AS sd "
        "JOIN jobs AS sj ON sj.id = sd.depends_on_id WHERE sd.job_id = s.id "
        f"AND sj.state <> '{JobState.ACCEPTED.value}' AND sj.id <> :job_id_))"
    )
    if branch_sets:
        claim = (
            f"claim AS ({_update_branch_fenced(branch_sets).source} "  # noqa: S608
            "AND EXISTS (SELECT 1 FROM ready) RETURNING 1 AS ok)"
        )
    else:
        claim = "claim AS (SELECT ok FROM ready)"
    sets = ", ".join(f"{c} = :n_{c}" for c in columns)
    started = (
        f"started AS (UPDATE jobs SET {sets} WHERE id = :n_job_id AND state = '{pending}' "  # noqa: S608
        "AND EXISTS (SELECT 1 FROM claim) RETURNING 1 AS ok)"
    )
    return [ready, claim, started]


_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]


def _cast(table: Any, column: str, parameter: str) -> str:
    type_name: str = table.c[column].type.compile(dialect=_POSTGRESQL)
    return f"CAST({parameter} AS {type_name.split('(')[0]})"


@functools.lru_cache(maxsize=16)
def _insert_into(table: str, columns: tuple[str, ...]) -> hot.HotStatement:
    _known(metadata_tables[table], columns)
    return hot.HotStatement(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"  # noqa: S608
    )


def _known(table: Any, columns: tuple[str, ...]) -> None:
    """Column names are spliced into SQL text: only ever the table's own."""
    unknown = set(columns) - set(table.c.keys())
    if unknown:
        raise ValueError(f"not columns of {table.name}: {sorted(unknown)}")


def insert_attempt(conn: Connection, values: Mapping[str, Any]) -> None:
    """One row per OSCU call."""
    hot.run(conn, _insert_into("attempts", tuple(values)), values)


def insert_event(conn: Connection, row: Mapping[str, Any]) -> None:
    """One ``result_events`` row (job_id, tin, state, body, created_at)."""
    hot.run(conn, _insert_into("result_events", tuple(row)), row)


def stock_balance(conn: Connection, branch_id: int, item_cd: str) -> Decimal | None:
    """An item's balance of accepted movements (a stock master's ``rsdQty``); read on the
    driver, as the drain's other per-job statements are."""
    rows, _ = hot.run(conn, _STOCK_BALANCE, {"branch_id": branch_id, "item_cd": item_cd})
    if not rows:
        return None
    value = rows[0].qty
    if isinstance(value, float):  # SQLite keeps NUMERIC as REAL: round as SQLAlchemy does
        return Decimal(f"{value:.{_QTY_SCALE}f}")
    return Decimal(value)


def add_stock(conn: Connection, branch_id: int, deltas: Mapping[str, Decimal]) -> None:
    """Apply an accepted movement's quantities to the branch's balances."""
    for item_cd, delta in deltas.items():
        key = {"branch_id_": branch_id, "item_cd_": item_cd}
        if not conn.execute(_ADD_STOCK, {**key, "delta": delta}).rowcount:
            conn.execute(_INSERT_STOCK, {"branch_id": branch_id, "item_cd": item_cd, "qty": delta})


def job_invc_no(conn: Connection, job_id: int) -> int | None:
    value = conn.execute(_JOB_INVC_NO, {"job_id": job_id}).scalar()
    return None if value is None else int(value)


#: Bind names end in "_": an UPDATE reserves the bare column names for its SET values.
_THIS_BALANCE = and_(
    stock_balances.c.branch_id == bindparam("branch_id_"),
    stock_balances.c.item_cd == bindparam("item_cd_"),
)
_STOCK_BALANCE = hot.HotStatement(
    "SELECT qty FROM stock_balances WHERE branch_id = :branch_id AND item_cd = :item_cd"
)
_QTY_SCALE = int(getattr(stock_balances.c.qty.type, "scale", None) or 0)
_ADD_STOCK = (
    update(stock_balances)
    .where(_THIS_BALANCE)
    .values(qty=stock_balances.c.qty + bindparam("delta", type_=stock_balances.c.qty.type))
)
_INSERT_STOCK = insert(stock_balances)
_JOB_INVC_NO = select(jobs.c.invc_no).where(jobs.c.id == bindparam("job_id"))


def dependents(conn: Connection, job_ids: Iterable[int], states: Sequence[str]) -> list[Row[Any]]:
    """Jobs in ``states`` that directly depend on any of ``job_ids``."""
    ids = list(job_ids)
    if not ids:
        return []
    return list(
        conn.execute(
            select(*_DEPENDENT_COLUMNS)
            .join(job_dependencies, job_dependencies.c.job_id == jobs.c.id)
            .where(job_dependencies.c.depends_on_id.in_(ids), jobs.c.state.in_(states))
            .distinct()
        )
    )


def waiting_or_blocked_dependents(conn: Connection, job_id: int) -> list[Any]:
    """Pending or blocked jobs that directly depend on ``job_id``."""
    return hot.run(conn, _WAITING_OR_BLOCKED_DEPENDENTS, {"job_id": job_id})[0]


_DEPENDENT_COLUMNS = (
    jobs.c.id,
    jobs.c.branch_id,
    jobs.c.tin,
    jobs.c.idempotency_key,
    jobs.c.kind,
    jobs.c.state,
    job_dependencies.c.depends_on_id,
)
_WAITING_OR_BLOCKED_DEPENDENTS = hot.HotStatement(
    "SELECT j.id, j.branch_id, j.tin, j.idempotency_key, j.kind, j.state, d.depends_on_id "  # noqa: S608
    "FROM jobs AS j JOIN job_dependencies AS d ON d.job_id = j.id "
    f"WHERE d.depends_on_id = :job_id AND j.state IN ('{JobState.PENDING.value}', "
    f"'{JobState.BLOCKED.value}')"
)


def set_state_unfenced(
    conn: Connection, job_ids: Sequence[int], from_states: Sequence[str], values: Mapping[str, Any]
) -> int:
    """State change of jobs outside the lease holder's branch (block/unblock dependents).

    Only moves jobs between non-sending states (pending <-> blocked), which no drain is
    writing at that moment, so no fencing is needed; the ``from_states`` guard keeps it safe.
    """
    if not job_ids:
        return 0
    return conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(list(job_ids)), jobs.c.state.in_(from_states))
        .values(**values)
    ).rowcount
