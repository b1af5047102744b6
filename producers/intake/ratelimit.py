"""Per-API-key rate limit on the ``limits`` library: 429 with Retry-After when over budget.

Counters live in memory (one intake process) or in Redis (``rate_limit_storage=redis://...``,
shared by several intake processes). If the counter store is unreachable the request goes
through: a till's sale matters more than the budget, and the store's outage is logged.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

log = logging.getLogger("etims_relay.intake")


class KeyRateLimiter:
    def __init__(self, rate: str, storage_uri: str = "memory://") -> None:
        self._item = parse(rate)
        self._limiter = SlidingWindowCounterRateLimiter(storage_from_string(storage_uri))

    def __repr__(self) -> str:
        return f"KeyRateLimiter({self._item})"

    def retry_after(self, key_id: str) -> int | None:
        """Count one request of ``key_id``; None if allowed, else seconds to wait."""
        try:
            if self._limiter.hit(self._item, key_id):
                return None
            stats = self._limiter.get_window_stats(self._item, key_id)
        except Exception as exc:  # fail open, see the module docstring
            log.warning("rate-limit store unavailable (%s): request allowed", type(exc).__name__)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))
