"""jobs: trader invoice number per job, claimed once per scope; notices.raw_data and
notifications.language

``trd_invc_no`` holds a sale's or credit note's ``trdInvcNo`` so enqueue can refuse a reuse
under another idempotency key (KRA would answer 994). ``trd_invc_scope`` is where the number
was claimed ("tin" or "tin/bhf_id", from ``ETIMS_TRD_INVC_NO_SCOPE`` at enqueue time); a
unique partial index on (scope, number) makes two concurrent enqueues of one number fail
one of them. Existing jobs get ``trd_invc_no`` from their payload but no scope: an outbox
may already hold reused numbers, which the unique index must not refuse; enqueue's lookup
by (tin, trd_invc_no) still sees them.

``notices.raw_data`` keeps KRA's notice row as received (``GET /api/v1/notices/{id}`` shows
it); ``notifications.language`` the ``Accept-Language`` of an authority's push.

Revision ID: 0006
Revises: 0004
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("trd_invc_no", sa.String(50), nullable=True))
        batch.add_column(sa.Column("trd_invc_scope", sa.String(20), nullable=True))
    _backfill()
    op.create_index(
        "uq_jobs_trd_invc_scope_trd_invc_no",
        "jobs",
        ["trd_invc_scope", "trd_invc_no"],
        unique=True,
        postgresql_where=sa.text("trd_invc_scope IS NOT NULL"),
        sqlite_where=sa.text("trd_invc_scope IS NOT NULL"),
    )
    op.create_index(
        "ix_jobs_tin_trd_invc_no",
        "jobs",
        ["tin", "trd_invc_no"],
        unique=False,
        postgresql_where=sa.text("trd_invc_no IS NOT NULL"),
        sqlite_where=sa.text("trd_invc_no IS NOT NULL"),
    )
    with op.batch_alter_table("notices") as batch:
        batch.add_column(sa.Column("raw_data", sa.Text(), nullable=True))
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))


def _backfill() -> None:
    """Copy trdInvcNo out of the stored payload of every sale and credit note."""
    conn = op.get_bind()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.BigInteger),
        sa.column("kind", sa.String),
        sa.column("payload", sa.Text),
        sa.column("trd_invc_no", sa.String),
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.payload)
            .where(jobs.c.kind.in_(["sale", "credit_note"]), jobs.c.id > last)
            .order_by(jobs.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        updates = []
        for job_id, payload in rows:
            number = json.loads(payload).get("trdInvcNo")
            if number is not None:
                updates.append({"job_id": job_id, "number": str(number)[:50]})
        if updates:
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == sa.bindparam("job_id"))
                .values(trd_invc_no=sa.bindparam("number")),
                updates,
            )
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("language")
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("raw_data")
    op.drop_index("ix_jobs_tin_trd_invc_no", table_name="jobs")
    op.drop_index("uq_jobs_trd_invc_scope_trd_invc_no", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("trd_invc_scope")
        batch.drop_column("trd_invc_no")
