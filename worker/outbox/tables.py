"""Every table of the outbox, on one ``MetaData``: what Alembic compares and what
``create_all`` creates. Importing this module imports every area's table module."""

from __future__ import annotations

from worker.outbox import catalog_models, intake_models, models, ops_models
from worker.outbox.base import metadata

__all__ = ["catalog_models", "intake_models", "metadata", "models", "ops_models"]
