"""The outbox's one ``MetaData`` and the column types every table module shares.

Each area declares its tables in its own module (``models`` for the core, ``catalog_models``,
``intake_models``, ``ops_models``) on this ``metadata``; :mod:`worker.outbox.tables` imports
them all, so Alembic and ``create_all`` see every table. Table modules import this module,
never each other's importers, so no module imports one that imports it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData

__all__ = ["NAMING_CONVENTION", "Id", "metadata"]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
Id = BigInteger().with_variant(Integer(), "sqlite")
