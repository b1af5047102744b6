"""Tables of the intake area, on the outbox's one MetaData (see worker/outbox/models.py)."""

from __future__ import annotations

from worker.outbox.models import metadata

__all__ = ["metadata"]
