"""Tables of the intake area, on the outbox's one MetaData (worker/outbox/base.py).

Tables
------
``api_keys``            one row per intake API key: a public ``key_id`` (shown by ``apikey
                        list``, part of the key), the sha256 of the whole key (never the key),
                        its tin, optional branch scope (JSON list; empty = every branch),
                        ``admin`` (every tin) and ``revoked_at``.
``webhooks``            per tin: the receiver URL and its signing secret, Fernet-encrypted with
                        the same key as cmcKeys; ``event_cursor`` bounds the scan of
                        ``result_events`` (see worker/webhooks.py for why it lags).
``webhook_deliveries``  one row per (result event, webhook): its own retry schedule and a claim
                        (``claim_token``, ``claimed_until``) so several workers never POST the
                        same delivery at once; ``state`` is pending | delivered | failed.

Also adds ``ix_jobs_request_id`` on ``jobs`` for ``GET /v1/requests/{request_id}``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from worker.outbox.base import Id, metadata
from worker.outbox.models import jobs

__all__ = ["api_keys", "webhook_deliveries", "webhooks"]

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key_id", String(32), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("tin", String(11), nullable=False),
    Column("branches", Text, nullable=False, default="[]"),
    Column("admin", Boolean, nullable=False, default=False),
    Column("label", String(200)),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    UniqueConstraint("key_id", name="uq_api_keys_key_id"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("tin", String(11), primary_key=True),
    Column("url", Text, nullable=False),
    Column("secret_encrypted", Text, nullable=False),
    Column("event_cursor", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, ForeignKey("result_events.id"), nullable=False),
    Column("tin", String(11), nullable=False),
    Column("state", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("claim_token", String(64)),
    Column("claimed_until", Float),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    UniqueConstraint("event_id", name="uq_webhook_deliveries_event_id"),
    Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
)

# Partial (0004): jobs enqueued through the Python API, a CSV or a till have no request id,
# and an index entry per such job would only cost writes.
Index(
    "ix_jobs_request_id",
    jobs.c.request_id,
    postgresql_where=jobs.c.request_id.is_not(None),
    sqlite_where=jobs.c.request_id.is_not(None),
)
