"""``/v1/branches/{tin}/{bhf_id}``, ``/healthz`` and ``/readyz``.

``/healthz`` only says the process answers (a liveness probe must not fail because
PostgreSQL is down: restarting the intake would not fix that). ``/readyz`` checks the
database and the broker, each within ``ready_timeout_s``, so a load balancer stops sending
work to an intake that could not write it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from kombu.connection import Connection as BrokerConnection

from producers.intake.deps import ContextDep, PrincipalDep
from producers.intake.errors import ApiError
from producers.intake.models import BranchView, ErrorBody, Health
from producers.intake.routes_jobs import _AUTH
from producers.intake.views import branch_view
from schemas.types import BHF_ID_RE, TIN_RE
from worker.outbox import intake_queries as iq

router = APIRouter()


@router.get(
    "/v1/branches/{tin}/{bhf_id}",
    response_model=BranchView,
    tags=["branches"],
    summary="Backlog of one branch",
    responses={**_AUTH, 404: {"model": ErrorBody, "description": "No job was ever enqueued."}},
)
def get_branch(
    tin: Annotated[str, Path(pattern=TIN_RE)],
    bhf_id: Annotated[str, Path(pattern=BHF_ID_RE)],
    principal: PrincipalDep,
    context: ContextDep,
) -> BranchView:
    """Jobs by state, the age of the oldest unsent job, and whether the branch is parked."""
    if not principal.may_access(tin, bhf_id):
        raise ApiError(403, f"branch {tin}/{bhf_id} is outside this API key's scope")
    with context.engine.connect() as conn:
        summary = iq.branch_summary(conn, tin, bhf_id)
    if summary is None:
        raise ApiError(404, f"no job was ever enqueued for {tin}/{bhf_id}")
    return branch_view(tin, bhf_id, summary, time.time())


@router.get("/healthz", response_model=Health, tags=["health"], summary="Liveness")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    tags=["health"],
    summary="Readiness: database and broker reachable",
    responses={503: {"model": Health, "description": "A dependency is down."}},
)
async def readyz(context: ContextDep) -> JSONResponse:
    checks = {
        "database": await _probe(lambda: _database(context), context.ready_timeout_s),
        "broker": await _probe(lambda: _broker(context), context.ready_timeout_s),
    }
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


async def _probe(check: Callable[[], None], timeout_s: float) -> str:
    try:
        await asyncio.wait_for(run_in_threadpool(check), timeout_s)
    except TimeoutError:
        return f"timeout after {timeout_s}s"
    except Exception as exc:  # any failure means "not ready"; say which kind
        return f"down ({type(exc).__name__})"
    return "ok"


def _database(context: ContextDep) -> None:
    with context.engine.connect() as conn:
        iq.ping(conn)


def _broker(context: ContextDep) -> None:
    if not context.broker_url:
        return
    timeout = context.ready_timeout_s
    with BrokerConnection(context.broker_url, connect_timeout=timeout) as conn:  # type: ignore[no-untyped-call]
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
