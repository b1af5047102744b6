"""Stock-outs wait behind later sales, within bounds, so that they can be merged.

Under a backlog a branch's head is often a stock-out whose sale was just accepted, with more
sales ready behind it. With ``ETIMS_COALESCE__STOCK_IO`` on, the first of those later sales
(or credit notes) goes first, as long as:

- the head is a stock-out (``sarTyCd`` 1x) never sent: pending, no frozen body, not maybe
  recorded. A stock-in never waits: a later sale may need its goods at KRA (the "goods in the
  stock master before they are sold" rule of some hosts). A job that may have reached KRA is
  resent in its turn, as always;
- only never-sent stock-outs and pending stock masters lie between the head and that sale
  (``barriers``): a sale moves no balance, so a stock master sent after it still reports
  KRA's running balance; anything else (an item, a stock-in, a job already started) keeps
  its place;
- that sale is ready: its dependencies satisfied, not waiting for a retry. Sales and credit
  notes keep their order among themselves (it is the first active one), and nothing goes
  before what it depends on;
- the stock-outs it would pass number at most ``max_defer_jobs``, and the head has been ready
  (its last dependency accepted, else enqueued) for less than ``max_defer_s``.

Otherwise the head, the oldest deferred stock-out, goes, carrying the ready stock-outs behind
it (:mod:`worker.stock_merge`). A branch with no later sale ready sends as it always did.
Merging off, nothing waits: deferral only serves merging.

This module only decides; the drain asks the store for the facts (``sale_past_stock``).
"""

from __future__ import annotations

from schemas.completion import loads_payload
from schemas.jobs import JobKind, JobState
from schemas.settings import CoalesceSettings
from worker.coalesce import never_sent
from worker.outbox.rows import SATISFIED, HeadJob, StockOutDeferral


def is_stock_out(job: HeadJob) -> bool:
    """A stock movement that takes goods out (``sarTyCd`` 1x)."""
    return job.kind is JobKind.STOCK_IO and str(_sar_ty_cd(job)).startswith("1")


def merging_applies(job: HeadJob, settings: CoalesceSettings) -> bool:
    """Whether ``job``'s start is one merging acts on: a never-sent stock-out with merging on.
    It may wait behind later sales (:func:`may_defer`) and carry the ready stock-outs behind
    it (the drain's ``_carrier``), so its start is never planned ahead (the drain's
    ``_may_ride``). One test for all three, so that they cannot disagree."""
    return settings.stock_io and is_stock_out(job) and never_sent(job)


def may_defer(job: HeadJob, settings: CoalesceSettings) -> bool:
    """Whether the ready head is worth asking the branch about (no query yet)."""
    return settings.max_defer_jobs > 0 and merging_applies(job, settings)


def passer(
    head: HeadJob, facts: StockOutDeferral, now: float, settings: CoalesceSettings
) -> HeadJob | None:
    """The later sale that goes before the deferred head, if any; None: send the head."""
    if not facts.past.jobs or facts.barriers:
        return None
    if facts.deferred_jobs > settings.max_defer_jobs:
        return None
    ready_since = max(head.created_at, facts.head_ready_since or 0.0)
    if now - ready_since >= settings.max_defer_s:
        return None
    sale = facts.past.jobs[0]
    if sale.state not in _SENDABLE or any(d.state not in SATISFIED for d in sale.dependencies):
        return None
    if sale.next_attempt_at is not None and sale.next_attempt_at > now:
        return None
    return sale


#: A later sale in one of these states may go now (a blocked or dead one is not active).
_SENDABLE = frozenset({JobState.PENDING, JobState.IN_FLIGHT, JobState.RETRY_WAIT, JobState.UNKNOWN})


def _sar_ty_cd(job: HeadJob) -> object:
    return loads_payload(job.payload).get("sarTyCd")
