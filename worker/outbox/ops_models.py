"""Tables of the ops area, on the outbox's one MetaData (worker/outbox/base.py).

Tables
------
``notices``                    KRA notices (``selectNoticeList``) per device, one row per
                               (tin, bhf_id, noticeNo): a re-sync never stores a notice twice;
                               ``raw_data`` is KRA's row as received (JSON, 0006).
                               ``read_at``/``read_by`` are set by an operator.
``notice_syncs``               per device, the ``lastReqDt`` to send next (KRA's ``resultDt``
                               of the last successful sync), so each sync is incremental.
``notification_registrations`` who may push device events to ``PUT /v1/notifications``: a
                               name and the SHA-256 of its pre-shared ``ApiKey`` (the key itself
                               is shown once, never stored).
``notifications``              device events pushed by an authority, one row per
                               (registration, delivery id): a redelivery is stored once;
                               ``language`` is the sender's ``Accept-Language`` (ar/en, 0006).
                               ``acknowledged_at`` clears it from the "device flagged" gauges.

Also declared here (it serves the scrape-time gauges of :mod:`worker.metrics`):
``ix_jobs_state_created_at`` on ``jobs``, so "oldest pending job" overall and per branch is an
index walk, not a scan of every pending row.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, String, Table, Text, UniqueConstraint

from worker.outbox.base import Id, metadata
from worker.outbox.models import jobs

__all__ = [
    "notice_syncs",
    "notices",
    "notification_registrations",
    "notifications",
]

#: Oldest active job overall and per branch, read at every scrape (worker/metrics.py).
Index("ix_jobs_state_created_at", jobs.c.state, jobs.c.created_at)

notices = Table(
    "notices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tin", String(11), nullable=False),
    Column("bhf_id", String(2), nullable=False),
    Column("notice_no", String(40), nullable=False),
    Column("title", Text),
    Column("cont", Text),
    Column("dtl_url", Text),
    Column("regr_nm", String(120)),
    #: KRA's regDt (yyyyMMddHHmmss, Kenya time), as received
    Column("reg_dt", String(14)),
    #: KRA's notice row as received (JSON); NULL for notices synced before 0006
    Column("raw_data", Text),
    Column("fetched_at", Float, nullable=False),
    Column("read_at", Float),
    Column("read_by", String(120)),
    UniqueConstraint("tin", "bhf_id", "notice_no", name="uq_notices_tin_bhf_id_notice_no"),
    Index("ix_notices_read_at", "read_at"),
)

notice_syncs = Table(
    "notice_syncs",
    metadata,
    Column("tin", String(11), primary_key=True),
    Column("bhf_id", String(2), primary_key=True),
    Column("last_req_dt", String(14), nullable=False),
    Column("synced_at", Float, nullable=False),
)

notification_registrations = Table(
    "notification_registrations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(120), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    UniqueConstraint("name", name="uq_notification_registrations_name"),
    UniqueConstraint("key_hash", name="uq_notification_registrations_key_hash"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("registration_id", Id, ForeignKey("notification_registrations.id"), nullable=False),
    Column("delivery_id", String(200), nullable=False),
    Column("event", String(40), nullable=False),
    Column("tin", String(11)),
    Column("bhf_id", String(2)),
    Column("serial", String(100)),
    Column("message", Text),
    Column("occurred_at", String(40)),
    #: ``Accept-Language`` of the delivery ("ar" or "en"), when the sender gave one
    Column("language", String(8)),
    #: the event as received (JSON), minus nothing: an authority push carries no secret of ours
    Column("body", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("acknowledged_at", Float),
    Column("acknowledged_by", String(120)),
    UniqueConstraint(
        "registration_id", "delivery_id", name="uq_notifications_registration_id_delivery_id"
    ),
    Index("ix_notifications_event_acknowledged_at", "event", "acknowledged_at"),
)
