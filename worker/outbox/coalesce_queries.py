"""The SQL of stock-master coalescing (:mod:`worker.coalesce`), one named function each.

Kept apart from :mod:`worker.outbox.queries` so that the drain's own statements stay as they
are: coalescing asks its questions in one read, and its one write goes through the drain's
fenced job update.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from schemas.jobs import JobState
from worker.outbox.models import ACTIVE_PREDICATE


@dataclass(frozen=True, slots=True)
class StockMasterFacts:
    """What the branch says about a stock master about to be sent."""

    #: the latest stock master of the same item still to send in the branch, if any
    later_id: int | None
    #: whether KRA already accepted a stock master of this item from this branch
    item_reported: bool
    #: whether any job depends on this one
    has_dependents: bool


#: Both lookups by item walk ``ix_jobs_branch_stock_item_seq`` (branch, item, seq); the
#: dependents one ``ix_job_dependencies_depends_on``. One round trip for all three.
_FACTS = text(
    "SELECT "  # noqa: S608 - the predicate is a constant of the schema, not input
    "(SELECT later.id FROM jobs AS later WHERE later.branch_id = :branch_id "
    "AND later.stock_item_cd = :item_cd AND later.seq > :seq "
    f"AND later.{ACTIVE_PREDICATE} ORDER BY later.seq DESC LIMIT 1) AS later_id, "
    "EXISTS (SELECT 1 FROM jobs AS earlier WHERE earlier.branch_id = :branch_id "
    "AND earlier.stock_item_cd = :item_cd AND earlier.seq < :seq "
    f"AND earlier.state = '{JobState.ACCEPTED.value}') AS item_reported, "
    "EXISTS (SELECT 1 FROM job_dependencies AS d WHERE d.depends_on_id = :job_id) "
    "AS has_dependents"
)


def stock_master_facts(
    conn: Connection, branch_id: int, job_id: int, seq: int, item_cd: str
) -> StockMasterFacts:
    """Is a later stock master of ``item_cd`` waiting, did one ever reach KRA, and does
    anything depend on job ``job_id``?"""
    row = conn.execute(
        _FACTS, {"branch_id": branch_id, "item_cd": item_cd, "seq": seq, "job_id": job_id}
    ).one()
    later = None if row.later_id is None else int(row.later_id)
    return StockMasterFacts(later, bool(row.item_reported), bool(row.has_dependents))


_CHAIN = text("SELECT id, state, superseded_by FROM jobs WHERE id = :job_id")


def superseding_job(conn: Connection, job_id: int, *, max_hops: int = 50) -> tuple[int, str] | None:
    """(id, state) of the job that carries a superseded job's balance: its ``superseded_by``,
    followed while that one was superseded in turn. None if ``job_id`` is not superseded."""
    current, hops = job_id, 0
    row = conn.execute(_CHAIN, {"job_id": current}).first()
    if row is None or row.state != JobState.SUPERSEDED.value:
        return None
    while row is not None and row.state == JobState.SUPERSEDED.value and hops < max_hops:
        if row.superseded_by is None:
            return None
        current, hops = int(row.superseded_by), hops + 1
        row = conn.execute(_CHAIN, {"job_id": current}).first()
    return None if row is None else (current, str(row.state))
