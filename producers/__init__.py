"""Everything that puts work into etims-relay.

- :func:`enqueue` (``producers.enqueue``): the one entry, validated, idempotent, ordered;
- :mod:`producers.builders`: envelopes for the common cases (a sale with its stock jobs);
- :mod:`producers.intake`: the HTTP API (``etims-relay intake``);
- :mod:`producers.till`: the offline-tolerant till client with a local spool;
- :mod:`producers.csv_import`: bulk import of items and simple sales;
- :func:`verify_webhook`: check the signature of a result webhook.
"""

from __future__ import annotations

try:
    from producers.enqueue import (
        Enqueued,
        EnqueueError,
        EnqueueOptions,
        IdempotencyConflict,
        InvalidRecords,
        RecordError,
        enqueue,
    )
except ModuleNotFoundError as exc:
    # The till distribution (etims-relay-till, on a shop's PC) ships producers.till and
    # producers.builders with httpx, pydantic and filelock only: ``enqueue`` needs the server
    # stack (SQLAlchemy...), which is not there. Our own modules missing is a real error.
    if exc.name is None or exc.name.split(".")[0] in ("producers", "schemas", "etims_relay"):
        raise
from producers.webhooks_verify import WebhookVerificationError, verify_webhook

__all__ = [
    "EnqueueError",
    "EnqueueOptions",
    "Enqueued",
    "IdempotencyConflict",
    "InvalidRecords",
    "RecordError",
    "WebhookVerificationError",
    "enqueue",
    "verify_webhook",
]
