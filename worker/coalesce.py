"""Stock masters are state, not events: one that a later one of the same item makes moot is
never sent.

``saveStockMaster`` tells KRA an item's remaining quantity, and the drain computes that
quantity (``rsdQty``) at send time from the movements KRA accepted. Under a backlog a branch
holds several stock masters of one item; sending each costs a round trip, and only the last
one's balance stays true. So when a stock master is the branch's ready head and a later
stock master of the same item is already waiting, the head ends ``superseded`` (recorded with
the later job's id) without a call; the later one, built when its turn comes, carries every
movement accepted by then.

A head is superseded only when all of these hold:

- ``ETIMS_COALESCE__STOCK_MASTER`` is on (the default);
- the relay computes its ``rsdQty``: a producer's own count (a stock-take) is news for KRA,
  even a wrong one, so it is always sent, and never supersedes another either (enqueue
  leaves its ``stock_item_cd`` empty);
- it has never possibly reached KRA: pending, no frozen body, not maybe recorded. A job that
  may have been sent is resent byte for byte as the drain always does;
- no job depends on it: a dependent asked for *this* report to come first;
- KRA already holds a stock master of the item from this branch (an accepted earlier one):
  the first one of an item always goes, so "goods in the stock master before they are sold"
  holds on hosts that check it, whatever sale comes between.

Order at KRA is unchanged for every job that is sent: the superseding job is later in the
same branch, after the movements it reflects, and nothing is reordered.

This module only decides; the drain asks the store for the facts and writes the result
(:meth:`worker.outbox.branch_store.BranchStore.supersede`).
"""

from __future__ import annotations

from typing import Protocol

from schemas.completion import loads_payload
from schemas.jobs import JobKind, JobState, coalescing_item
from schemas.settings import CoalesceSettings
from worker.outbox.rows import StockMasterFacts

__all__ = ["StockMasterFacts", "computed_item", "may_be_superseded", "superseder"]


class _Job(Protocol):
    """What the rule looks at (``worker.outbox.rows.HeadJob`` has it)."""

    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def body(self) -> str | None: ...
    @property
    def maybe_recorded(self) -> bool: ...


def never_sent(job: _Job) -> bool:
    """Nothing of this job can have reached KRA: its body is frozen at the first send, and
    any send that may have arrived leaves it frozen or ``maybe_recorded``."""
    return job.state == JobState.PENDING.value and job.body is None and not job.maybe_recorded


def may_be_superseded(job: _Job, settings: CoalesceSettings) -> bool:
    """Whether ``job`` is worth asking the branch about (no query yet)."""
    return settings.stock_master and job.kind == JobKind.STOCK_MASTER.value and never_sent(job)


def computed_item(payload: str) -> str | None:
    """The item of a stock master whose ``rsdQty`` the relay computes; None for a
    producer's own count, which is always sent (the rule enqueue and edit store)."""
    return coalescing_item(JobKind.STOCK_MASTER.value, loads_payload(payload))


def superseder(facts: StockMasterFacts) -> int | None:
    """The job that supersedes the head, given what the branch says; None: send the head."""
    if facts.later_id is None or facts.has_dependents or not facts.item_reported:
        return None
    return facts.later_id
