"""Item codes that every host accepts: the spec's structure with a per-taxpayer running number.

``KE`` + item type (1 raw material, 2 finished product, 3 service) + packaging unit (2) +
quantity unit (2) + running number (7 digits), e.g. ``KE2NTBA0000012``. GavaConnect wants the
running number to be the next unused one for the PIN, so the counter is per tin (whatever the
prefix) and lives in the outbox database: two processes allocating for one tin never get the
same number, on PostgreSQL or SQLite. Enqueuing an item whose own conforming code uses a
number moves the counter past it, so hand-made codes and allocated ones never collide.
"""

from __future__ import annotations

import re

from sqlalchemy import Engine

from worker.outbox import catalog_queries as cq

__all__ = ["MAX_RUNNING_NUMBER", "ItemCodeAllocator"]

#: Seven digits.
MAX_RUNNING_NUMBER = 9_999_999

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_UNIT = re.compile(r"^[A-Z0-9]{2}$")


class ItemCodeAllocator:
    """Hands out conforming item codes for one taxpayer (``tin``)."""

    def __init__(self, engine: Engine, tin: str, *, country: str = "KE") -> None:
        self.engine, self.tin, self.country = engine, tin, country

    def __repr__(self) -> str:
        return f"ItemCodeAllocator({self.tin})"

    def allocate(
        self,
        *,
        item_ty_cd: str = "2",
        pkg_unit_cd: str = "NT",
        qty_unit_cd: str = "NO",
        country: str | None = None,
    ) -> str:
        """The next code for an item of this type and units (committed before returning).

        Raises ``ValueError`` for what the structure cannot hold: a unit that is not exactly
        two characters (GavaConnect refuses a one-character unit in the prefix: use e.g.
        ``NO`` for pieces), an item type other than 1-3, or an exhausted counter.
        """
        country = country or self.country
        if not _COUNTRY.match(country):
            raise ValueError(f"country must be 2 capital letters (class 05), not {country!r}")
        if item_ty_cd not in ("1", "2", "3"):
            raise ValueError(f"item_ty_cd must be 1, 2 or 3, not {item_ty_cd!r}")
        for name, unit in (("pkg_unit_cd", pkg_unit_cd), ("qty_unit_cd", qty_unit_cd)):
            if not _UNIT.match(unit):
                raise ValueError(
                    f"{name} {unit!r} cannot be embedded in an itemCd: it needs exactly 2"
                    " characters (e.g. NO for pieces)"
                )
        with self.engine.begin() as conn:
            number = cq.allocate_item_numbers(conn, self.tin)
        if number > MAX_RUNNING_NUMBER:
            raise ValueError(f"tin {self.tin} has used every 7-digit item running number")
        return f"{country}{item_ty_cd}{pkg_unit_cd}{qty_unit_cd}{number:07d}"
