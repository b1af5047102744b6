"""The intake FastAPI application: routes, the error shape, the body limit, the OpenAPI.

:func:`create_app` takes an already-built :class:`IntakeContext` (tests build one over a
test database); :func:`context_from_runtime` builds it from the settings and runtime the
``etims-relay intake`` command made.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from producers.enqueue import options_from_settings
from producers.intake import notice_routes, ops_routes, routes_jobs, routes_ops
from producers.intake.bodylimit import BodySizeLimit
from producers.intake.deps import IntakeContext
from producers.intake.errors import install_error_handlers
from producers.intake.models import schema_components
from producers.intake.ratelimit import KeyRateLimiter
from schemas.settings import Settings
from worker.notices import sync_device
from worker.runtime import Runtime

TITLE = "etims-relay intake"
VERSION = "1"


def create_app(context: IntakeContext, *, max_body_bytes: int = 2_000_000) -> FastAPI:
    app = FastAPI(title=TITLE, version=VERSION, description=_DESCRIPTION)
    app.state.intake = context
    install_error_handlers(app)
    ops_routes.install_error_handlers(app)
    app.include_router(routes_jobs.router)
    app.include_router(routes_ops.router)
    app.include_router(ops_routes.router)
    app.include_router(notice_routes.router)
    # Operations routes (e.g. GET /metrics) are mounted here, next to /healthz and /readyz.
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def context_from_runtime(settings: Settings, runtime: Runtime) -> IntakeContext:
    return IntakeContext(
        engine=runtime.engine,
        waker=runtime.waker,
        options=options_from_settings(settings),
        limiter=KeyRateLimiter(settings.intake.rate_limit, settings.intake.rate_limit_storage),
        broker_url=runtime.broker_url,
        ready_timeout_s=settings.intake.ready_timeout_s,
        notice_sync=lambda tin, bhf_id, since: sync_device(
            runtime.engine, runtime.client, runtime.devices, tin, bhf_id, since=since
        ),
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the schemas of the hand-parsed POST /v1/jobs body."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    request_schema = schema_components()
    components.update(request_schema.pop("$defs", {}))
    components["JobsRequest"] = request_schema
    app.openapi_schema = document
    return document


_DESCRIPTION = """\
Hand sales, credit notes, items and stock movements to etims-relay; read back their state
and KRA's signature. Authenticate with `Authorization: Bearer <api key>`. Every 4xx has the
body `{"errors": [{"index", "path", "message"}]}` and means nothing was written.
"""
