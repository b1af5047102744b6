"""operations: notices, inbound notifications (issue: operations)

Also adds ``ix_jobs_state_created_at``: the scrape-time gauges read the oldest active job
overall and per branch from it (worker/metrics.py), which must stay cheap with 1M pending jobs.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: BIGINT on PostgreSQL; INTEGER on SQLite (see worker/outbox/models.py ``Id``).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("ix_jobs_state_created_at", "jobs", ["state", "created_at"], unique=False)
    op.create_table(
        "notices",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tin", sa.String(length=11), nullable=False),
        sa.Column("bhf_id", sa.String(length=2), nullable=False),
        sa.Column("notice_no", sa.String(length=40), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("cont", sa.Text(), nullable=True),
        sa.Column("dtl_url", sa.Text(), nullable=True),
        sa.Column("regr_nm", sa.String(length=120), nullable=True),
        sa.Column("reg_dt", sa.String(length=14), nullable=True),
        sa.Column("fetched_at", sa.Float(), nullable=False),
        sa.Column("read_at", sa.Float(), nullable=True),
        sa.Column("read_by", sa.String(length=120), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
        sa.UniqueConstraint("tin", "bhf_id", "notice_no", name="uq_notices_tin_bhf_id_notice_no"),
    )
    op.create_index("ix_notices_read_at", "notices", ["read_at"], unique=False)
    op.create_table(
        "notice_syncs",
        sa.Column("tin", sa.String(length=11), nullable=False),
        sa.Column("bhf_id", sa.String(length=2), nullable=False),
        sa.Column("last_req_dt", sa.String(length=14), nullable=False),
        sa.Column("synced_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tin", "bhf_id", name=op.f("pk_notice_syncs")),
    )
    op.create_table(
        "notification_registrations",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_registrations")),
        sa.UniqueConstraint("name", name="uq_notification_registrations_name"),
        sa.UniqueConstraint("key_hash", name="uq_notification_registrations_key_hash"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("registration_id", ID, nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("tin", sa.String(length=11), nullable=True),
        sa.Column("bhf_id", sa.String(length=2), nullable=True),
        sa.Column("serial", sa.String(length=100), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.String(length=40), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("acknowledged_at", sa.Float(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["notification_registrations.id"],
            name=op.f("fk_notifications_registration_id_notification_registrations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "registration_id",
            "delivery_id",
            name="uq_notifications_registration_id_delivery_id",
        ),
    )
    op.create_index(
        "ix_notifications_event_acknowledged_at",
        "notifications",
        ["event", "acknowledged_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_event_acknowledged_at", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("notification_registrations")
    op.drop_table("notice_syncs")
    op.drop_index("ix_notices_read_at", table_name="notices")
    op.drop_table("notices")
    op.drop_index("ix_jobs_state_created_at", table_name="jobs")
