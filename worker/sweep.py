"""sweep(): wake every branch that is due and has no live drain. Runs on beat every few seconds.

This is what makes a lost, flushed or restarted broker harmless (invariant 1): a branch with
work keeps ``wake_after`` set until a drain finds it idle, so whatever happened to the
messages, the sweeper sends a new one once the branch's lease is free or expired. A woken
branch is not woken again for ``RESWEEP_AFTER_S`` unless its state changes, so a slow worker
pool does not pile up duplicate messages.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine

from worker.outbox import ops_queries as oq
from worker.outbox import queries as q
from worker.wake import Waker

#: Branches woken per sweep (the rest wait for the next one).
SWEEP_BATCH = 2000
#: A branch woken by the sweeper is not woken again for this long.
RESWEEP_AFTER_S = 10.0


def sweep(engine: Engine, waker: Waker, *, now: float | None = None) -> list[int]:
    """Wake due branches; return their ids."""
    now = time.time() if now is None else now
    with engine.begin() as conn:
        due = q.due_branches(conn, now, SWEEP_BATCH)
        oq.defer_wake(conn, due, now, now + RESWEEP_AFTER_S)
    waker.wake(due)
    return due
