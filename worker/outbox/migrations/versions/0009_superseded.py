"""jobs: a stock master's itemCd, and the job that superseded it

A stock master reports an item's balance (state, not an event): one that was never sent
ends ``superseded`` when a later stock master of the same item is waiting in its branch,
and ``superseded_by`` names that later job. ``stock_item_cd`` holds a stock master's
``itemCd`` (from its payload, when the relay computes its ``rsdQty``; filled by enqueue) so
the drain finds the later one through the partial index ``ix_jobs_branch_stock_item_seq``
instead of reading payloads. The state column is a plain string with no CHECK constraint:
the new state needs no schema change.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("stock_item_cd", sa.String(20), nullable=True))
        batch.add_column(
            sa.Column("superseded_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"))
        )
    _backfill()
    op.create_index(
        "ix_jobs_branch_stock_item_seq",
        "jobs",
        ["branch_id", "stock_item_cd", "seq"],
        unique=False,
        postgresql_where=sa.text("stock_item_cd IS NOT NULL"),
        sqlite_where=sa.text("stock_item_cd IS NOT NULL"),
    )


def _backfill() -> None:
    """Copy itemCd out of the stored payload of every stock master the relay counts for."""
    conn = op.get_bind()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.BigInteger),
        sa.column("kind", sa.String),
        sa.column("payload", sa.Text),
        sa.column("stock_item_cd", sa.String),
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.payload)
            .where(jobs.c.kind == "stock_master", jobs.c.id > last)
            .order_by(jobs.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        updates = []
        for job_id, payload in rows:
            body = json.loads(payload)
            item_cd = body.get("itemCd")
            if item_cd is not None and body.get("rsdQty") is None:  # as enqueue does
                updates.append({"job_id": job_id, "item_cd": str(item_cd)[:20]})
        if updates:
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == sa.bindparam("job_id"))
                .values(stock_item_cd=sa.bindparam("item_cd")),
                updates,
            )
        last = rows[-1][0]


def downgrade() -> None:
    """Code before 0009 knows no ``superseded`` state: such a job (never sent; a later stock
    master of its item carried its balance) becomes ``skipped``, its reason naming the
    carrier, as an operator would record a job deliberately not sent."""
    op.execute(
        "UPDATE jobs SET state = 'skipped', skip_reason = 'superseded by job ' || "
        "COALESCE(CAST(superseded_by AS VARCHAR(20)), '?') || ' (a later stock master of "
        "its item carried its balance; marked skipped by the 0009 downgrade)' "
        "WHERE state = 'superseded'"
    )
    op.drop_index("ix_jobs_branch_stock_item_seq", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("superseded_by")
        batch.drop_column("stock_item_cd")
