"""Whether the intake app really serves a path, for checking probes against."""

from __future__ import annotations

import asyncio
from typing import cast

import httpx


def intake_serves(path: str) -> int:
    """Status of ``GET path`` on ``producers.intake.app.create_app``; 404/405 = not served.

    No database: the context is a bare object, so a handler that needs it fails (500), which
    still proves the route exists. /healthz needs nothing and must answer 200.
    """
    from producers.intake.app import create_app
    from producers.intake.deps import IntakeContext

    app = create_app(cast(IntakeContext, object()))

    async def get() -> int:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            return (await client.get(path)).status_code

    return asyncio.run(get())
