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
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from schemas.completion import loads_payload
from schemas.jobs import JobKind, JobState
from schemas.settings import CoalesceSettings
from worker.effects import event_row
from worker.outbox import coalesce_queries as cq
from worker.outbox import queries as q
from worker.outbox.queries import Lease


def never_sent(job: Any) -> bool:
    """Nothing of this job can have reached KRA: its body is frozen at the first send, and
    any send that may have arrived leaves it frozen or ``maybe_recorded``."""
    return job.state == JobState.PENDING.value and job.body is None and not job.maybe_recorded


def may_be_superseded(job: Any, settings: CoalesceSettings) -> bool:
    """Whether ``job`` is worth asking the branch about (no query yet)."""
    return settings.stock_master and job.kind == JobKind.STOCK_MASTER.value and never_sent(job)


def superseder(facts: cq.StockMasterFacts) -> int | None:
    """The job that supersedes the head, given what the branch says; None: send the head."""
    if facts.later_id is None or facts.has_dependents or not facts.item_reported:
        return None
    return facts.later_id


def carrier(conn: Connection, branch_id: int, job: Any, settings: CoalesceSettings) -> int | None:
    """The later stock master that would carry ``job``'s balance, if ``job`` may be
    superseded; None: ``job`` is sent as usual. Reads only."""
    if not may_be_superseded(job, settings):
        return None
    payload = loads_payload(job.payload)
    item_cd = payload.get("itemCd")
    if item_cd is None or payload.get("rsdQty") is not None:
        return None
    facts = cq.stock_master_facts(conn, branch_id, int(job.id), int(job.seq), str(item_cd))
    return superseder(facts)


def supersede_head(
    conn: Connection, lease: Lease, job: Any, settings: CoalesceSettings, now: float
) -> int | None:
    """End the ready head ``job`` as superseded if a later stock master carries its balance;
    return the id of that later job, or None (send ``job`` as usual). Fenced by ``lease``."""
    later = carrier(conn, lease.branch_id, job, settings)
    if later is None:
        return None
    values = {
        "state": JobState.SUPERSEDED.value,
        "superseded_by": later,
        "next_attempt_at": None,
        "updated_at": now,
    }
    event = event_row(job, JobState.SUPERSEDED, now, {})
    body = json.loads(event["body"])
    body["superseded_by"] = later  # what a webhook consumer follows to the send that counts
    event["body"] = json.dumps(body, default=str)
    q.update_job_fenced(conn, lease, int(job.id), values, event=event)
    return later
