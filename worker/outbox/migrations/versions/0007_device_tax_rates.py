"""devices: KRA's tax rates per branch, when they were fetched, when the key last worked

``tax_rates`` holds class 04 of ``selectCodeList`` (rate per tax type, JSON of decimal
strings): the drain completes bodies with it instead of a configured guess.
``codes_synced_at`` says when it was fetched, ``key_ok_at`` when an authenticated call with
the device's key was last accepted (``device list``). All nullable: existing devices get
their rates on the next ``codes sync`` (the beat runs one daily).

Revision ID: 0007
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("tax_rates", sa.Text(), nullable=True))
        batch.add_column(sa.Column("codes_synced_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("key_ok_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("key_ok_at")
        batch.drop_column("codes_synced_at")
        batch.drop_column("tax_rates")
