"""jobs: pick a branch's head from an index of active jobs only

``ix_jobs_branch_state_seq (branch_id, state, seq)`` could not give a branch's active jobs in
``seq`` order (four states), so PostgreSQL walked ``uq_jobs_branch_seq`` from the branch's
first job and filtered: every head lookup re-read every job the branch ever had accepted.
``ix_jobs_branch_active_seq (branch_id, seq) WHERE state IN (active)`` holds only jobs still
to send, in order: the head is its first entry, and an accepted job leaves the index.

Also makes ``ix_jobs_request_id`` partial (``request_id IS NOT NULL``): only HTTP intake sets
it, and every other job paid an index entry per write for nothing.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: Literal, not bound: the planner only uses a partial index whose predicate it can prove
#: from the query's own text (worker/outbox/sql/drain.sql writes the same list).
ACTIVE_PREDICATE = "state IN ('pending', 'in_flight', 'retry_wait', 'unknown')"


def upgrade() -> None:
    op.create_index(
        "ix_jobs_branch_active_seq",
        "jobs",
        ["branch_id", "seq"],
        unique=False,
        postgresql_where=sa.text(ACTIVE_PREDICATE),
        sqlite_where=sa.text(ACTIVE_PREDICATE),
    )
    op.drop_index("ix_jobs_branch_state_seq", table_name="jobs")
    op.drop_index("ix_jobs_request_id", table_name="jobs")
    op.create_index(
        "ix_jobs_request_id",
        "jobs",
        ["request_id"],
        unique=False,
        postgresql_where=sa.text("request_id IS NOT NULL"),
        sqlite_where=sa.text("request_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_request_id", table_name="jobs")
    op.create_index("ix_jobs_request_id", "jobs", ["request_id"], unique=False)
    op.create_index("ix_jobs_branch_state_seq", "jobs", ["branch_id", "state", "seq"], unique=False)
    op.drop_index("ix_jobs_branch_active_seq", table_name="jobs")
