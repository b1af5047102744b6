"""Everything that puts work into etims-relay.

- :func:`enqueue` (``producers.enqueue``): the one entry, validated, idempotent, ordered;
- :mod:`producers.builders`: envelopes for the common cases (a sale with its stock jobs);
- :mod:`producers.intake`: the HTTP API (``etims-relay intake``);
- :mod:`producers.till`: the offline-tolerant till client with a local spool;
- :mod:`producers.csv_import`: bulk import of items and simple sales;
- :func:`verify_webhook`: check the signature of a result webhook.
"""

from __future__ import annotations

from producers.enqueue import (
    Enqueued,
    EnqueueError,
    EnqueueOptions,
    IdempotencyConflict,
    InvalidRecords,
    RecordError,
    enqueue,
)
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
