"""jobs: a stock movement's sarTyCd, and the stock-out whose merged send carries another

Under a backlog, stock-outs of one branch with the same ``sarTyCd`` may go as one
``insertStockIO`` (``ETIMS_COALESCE__STOCK_IO``): the oldest is the carrier, whose frozen body
is the merged one; every other one names it in ``merged_into`` and waits in the new state
``merged`` until the carrier's send ends, then ends as it does. ``sar_ty_cd`` holds a stock
movement's ``sarTyCd`` (from its payload; filled by enqueue and on an edit) so the drain tells
a stock-out, which may wait behind later sales, from a stock-in, which never does, without
reading payloads. The state column is a plain string with no CHECK constraint.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("sar_ty_cd", sa.String(2), nullable=True))
        batch.add_column(
            sa.Column("merged_into", sa.BigInteger().with_variant(sa.Integer(), "sqlite"))
        )
    _backfill()
    op.create_index(
        "ix_jobs_merged_into",
        "jobs",
        ["merged_into"],
        unique=False,
        postgresql_where=sa.text("merged_into IS NOT NULL"),
        sqlite_where=sa.text("merged_into IS NOT NULL"),
    )


def _backfill() -> None:
    """Copy sarTyCd out of the stored payload of every stock movement, as enqueue does."""
    conn = op.get_bind()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.BigInteger),
        sa.column("kind", sa.String),
        sa.column("payload", sa.Text),
        sa.column("sar_ty_cd", sa.String),
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.payload)
            .where(jobs.c.kind == "stock_io", jobs.c.id > last)
            .order_by(jobs.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        updates = []
        for job_id, payload in rows:
            sar_ty_cd = json.loads(payload).get("sarTyCd")
            if sar_ty_cd is not None:
                updates.append({"job_id": job_id, "sar_ty_cd": str(sar_ty_cd)[:2]})
        if updates:
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == sa.bindparam("job_id"))
                .values(sar_ty_cd=sa.bindparam("sar_ty_cd")),
                updates,
            )
        last = rows[-1][0]


def downgrade() -> None:
    """Code before 0010 knows no ``merged`` state and no merged send. A stock-out merged into
    a carrier whose send has not ended may already be at KRA inside it: no state of the older
    code says that (``skipped`` would give up lines KRA may hold, ``pending`` would send them
    twice), so the downgrade refuses while any job is ``merged``. Turn merging off
    (``ETIMS_COALESCE__STOCK_IO=false``) and let the branches drain: every carrier's send
    ends, and its members with it. Members that ended (``accepted`` or ``dead``) lose
    ``merged_into``; the carrier's frozen body stays the merged one."""
    merged = op.get_bind().execute(sa.text("SELECT count(*) FROM jobs WHERE state = 'merged'"))
    waiting = int(merged.scalar_one())
    if waiting:
        raise RuntimeError(
            f"{waiting} stock-out job(s) are 'merged' into a send that has not ended; code "
            "before 0010 cannot finish them. Set ETIMS_COALESCE__STOCK_IO=false, let the "
            "branches drain until `etims-relay status` shows no merged job, then downgrade"
        )
    op.drop_index("ix_jobs_merged_into", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("merged_into")
        batch.drop_column("sar_ty_cd")
