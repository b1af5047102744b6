"""item catalogue: item types per tin, and the itemCd running number per tin

``item_catalog`` is filled from the item jobs already enqueued, so the "no service in stock
movements" rule knows every item enqueued before this revision too.

Revision ID: 0008
Revises: 0004
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    catalog = op.create_table(
        "item_catalog",
        sa.Column("tin", sa.String(length=11), nullable=False),
        sa.Column("item_cd", sa.String(length=20), nullable=False),
        sa.Column("item_ty_cd", sa.String(length=5), nullable=False),
        sa.PrimaryKeyConstraint("tin", "item_cd", name=op.f("pk_item_catalog")),
    )
    op.create_table(
        "item_code_counters",
        sa.Column("tin", sa.String(length=11), nullable=False),
        sa.Column("next_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tin", name=op.f("pk_item_code_counters")),
    )
    _backfill(catalog)


def _backfill(catalog: sa.Table) -> None:
    """The latest item job per (tin, itemCd) gives the type, as KRA upserts items."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT tin, payload FROM jobs WHERE kind = 'item' ORDER BY id")
    ).all()
    types: dict[tuple[str, str], str] = {}
    for tin, payload in rows:
        body = json.loads(payload)
        if isinstance(body, dict) and body.get("itemCd") and body.get("itemTyCd") is not None:
            types[(tin, str(body["itemCd"]))] = str(body["itemTyCd"])
    if types:
        op.bulk_insert(
            catalog,
            [{"tin": t, "item_cd": c, "item_ty_cd": ty} for (t, c), ty in types.items()],
        )


def downgrade() -> None:
    op.drop_table("item_code_counters")
    op.drop_table("item_catalog")
