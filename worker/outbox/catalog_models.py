"""Tables of the item catalogue, on the outbox's one MetaData (worker/outbox/base.py).

Tables
------
``item_catalog``        (tin, itemCd) -> itemTyCd of the latest item job enqueued for it: how
                        enqueue knows, with one primary-key read, that a stock job names a
                        service (itemTyCd 3), which has no stock.
``item_code_counters``  per tin, the next running number of the spec's itemCd structure
                        (``producers.builders.ItemCodeAllocator``). GavaConnect wants the
                        next unused number per PIN, so a counter per tin, not per prefix;
                        enqueuing an item with a conforming code moves it past that number.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, String, Table

from worker.outbox.base import metadata

__all__ = ["item_catalog", "item_code_counters"]

item_catalog = Table(
    "item_catalog",
    metadata,
    Column("tin", String(11), primary_key=True),
    Column("item_cd", String(20), primary_key=True),
    Column("item_ty_cd", String(5), nullable=False),
)

item_code_counters = Table(
    "item_code_counters",
    metadata,
    Column("tin", String(11), primary_key=True),
    Column("next_number", BigInteger, nullable=False),
)
