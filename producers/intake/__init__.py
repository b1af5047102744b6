"""HTTP intake: ``POST /v1/jobs`` and the read endpoints, as a FastAPI app (see app.py)."""

from __future__ import annotations

from producers.intake.app import context_from_runtime, create_app
from producers.intake.deps import IntakeContext

__all__ = ["IntakeContext", "context_from_runtime", "create_app"]
