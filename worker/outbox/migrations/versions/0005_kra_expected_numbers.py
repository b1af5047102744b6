"""branches: the invcNo/sarNo KRA said it expects next

A sequence answer ("Invalid invcNo sequence, expected: 43 but found: 41") names KRA's next
number; the drain keeps it on the branch so that ``status`` can show it and the operator can
run ``branch set-next`` with it. NULL when KRA has not said.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("branches") as batch:
        batch.add_column(sa.Column("kra_expected_invc_no", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("kra_expected_sar_no", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("branches") as batch:
        batch.drop_column("kra_expected_sar_no")
        batch.drop_column("kra_expected_invc_no")
