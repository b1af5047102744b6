"""``/v1/jobs`` and ``/v1/requests``: enqueue batches, read jobs back.

Tenant rule: a key only sees jobs of its tin (and branches, if scoped). For anything else the
answer is 403 with the same words whether or not the job exists, so ids and keys of other
tenants cannot be probed. Only a key that covers the whole scope asked about gets a 404.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection

from producers.apikeys import Principal
from producers.enqueue import (
    Enqueued,
    IdempotencyConflict,
    InvalidRecords,
    TrdInvcNoConflict,
    enqueue,
)
from producers.intake.body import parse_jobs
from producers.intake.deps import ContextDep, IntakeContext, PrincipalDep
from producers.intake.errors import ApiError, unavailable
from producers.intake.models import (
    EnqueuedJob,
    ErrorBody,
    ErrorItem,
    JobsAccepted,
    JobView,
    RequestView,
)
from producers.intake.views import job_view
from schemas.jobs import JobKind, JobState
from schemas.types import TIN_RE
from worker.outbox import coalesce_queries as cq
from worker.outbox import intake_queries as iq
from worker.outbox.dberrors import classify, describe

log = logging.getLogger("etims_relay.intake")

router = APIRouter(prefix="/v1", tags=["jobs"])

#: Largest id the database can hold (BIGINT); larger ids are a 422, not a driver error.
MAX_ID = 2**63 - 1
_TIN = TIN_RE
_TEXT = r"^[^\x00]+$"

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, unknown or revoked API key."},
    403: {"model": ErrorBody, "description": "Outside this API key's tin or branches."},
    422: {"model": ErrorBody, "description": "Invalid input; errors name index and path."},
    429: {"model": ErrorBody, "description": "Rate limit of the key; see Retry-After."},
}

_POST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobsRequest"}}},
    }
}


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobsAccepted,
    summary="Enqueue 1 to 100 jobs, all-or-nothing",
    openapi_extra=_POST_BODY,
    responses={
        **_AUTH,
        409: {
            "model": ErrorBody,
            "description": "Idempotency key reused with another payload, or a sale's trdInvcNo "
            "already carried by another key of its branch (or tin).",
        },
        413: {"model": ErrorBody, "description": "Request body over the size limit."},
        503: {"model": ErrorBody, "description": "Outbox unavailable; retry (Retry-After)."},
    },
)
async def post_jobs(request: Request, principal: PrincipalDep, context: ContextDep) -> JobsAccepted:
    """Validate every record, then write them all in one transaction (or nothing).

    Same idempotency key and payload as an existing job returns that job (``created``
    false); the same key with another payload is a 409 naming the record.
    """
    records = parse_jobs(await request.body())
    _check_scope(principal, records)
    request_id = uuid.uuid4().hex
    results = await run_in_threadpool(_enqueue, context, records, request_id)
    return JobsAccepted(
        request_id=request_id,
        jobs=[
            EnqueuedJob(
                index=r.index,
                id=r.id,
                idempotency_key=r.idempotency_key,
                state=JobState(r.state),
                created=r.created,
            )
            for r in results
        ],
    )


def _check_scope(principal: Principal, records: list[Any]) -> None:
    """403 for records outside the key's tin or branches (checked before validation)."""
    problems = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            continue
        tin, bhf_id = record.get("tin"), record.get("bhf_id")
        if not isinstance(tin, str):
            continue
        if not principal.admin and tin != principal.tin:
            problems.append(
                ErrorItem(index=index, path="tin", message="outside this API key's tin")
            )
        elif isinstance(bhf_id, str) and not principal.may_access(tin, bhf_id):
            problems.append(
                ErrorItem(index=index, path="bhf_id", message="outside this API key's branches")
            )
    if problems:
        raise ApiError(403, problems)


def _enqueue(context: IntakeContext, records: list[Any], request_id: str) -> list[Enqueued]:
    """enqueue() with its refusals mapped to HTTP answers.

    enqueue() itself re-runs a transaction that lost a race on a key (see WRITE_ATTEMPTS);
    one still losing after that, or a database that is down, is a 503: nothing was written.
    """
    try:
        return enqueue(
            context.engine,
            records,
            options=context.options,
            waker=context.waker,
            request_id=request_id,
        )
    except InvalidRecords as exc:
        items = [ErrorItem(index=e.index, path=e.path, message=e.message) for e in exc.errors]
        raise ApiError(422, items) from None
    except IdempotencyConflict as exc:
        message = f"idempotency_key {exc.key!r} already used with a different payload"
        item = ErrorItem(index=exc.index, path="idempotency_key", message=message)
        raise ApiError(409, [item]) from None
    except TrdInvcNoConflict as exc:
        message = (
            f"trdInvcNo {exc.trd_invc_no!r} is already used by idempotency_key "
            f"{exc.other_key!r} ({exc.scope}); KRA would refuse it (994)"
        )
        item = ErrorItem(index=exc.index, path="payload.trdInvcNo", message=message)
        raise ApiError(409, [item]) from None
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise
        log.warning("enqueue failed on the database: %s", describe(exc))
        raise unavailable(failure) from None


def _hidden(job_id: int | str) -> ApiError:
    return ApiError(403, f"no job {job_id} is visible to this API key")


@router.get(
    "/jobs/{job_id}",
    response_model=JobView,
    summary="One job",
    responses={**_AUTH, 404: {"model": ErrorBody, "description": "Admin keys only: no such job."}},
)
def get_job(
    job_id: Annotated[int, Path(ge=1, le=MAX_ID)], principal: PrincipalDep, context: ContextDep
) -> JobView:
    """State, attempts, KRA's answer and, for accepted sales, the signature and QR link."""
    with context.engine.connect() as conn:
        row = iq.get_job(conn, job_id)
        if row is None or not principal.may_access(row.tin, row.bhf_id):
            if row is None and principal.admin:
                raise ApiError(404, f"no job {job_id}")
            raise _hidden(job_id)
        return _job_view(conn, row)


@router.get(
    "/jobs",
    response_model=JobView,
    summary="Find a job by idempotency key",
    responses={**_AUTH, 404: {"model": ErrorBody, "description": "No such key in this tin."}},
)
def find_job(
    principal: PrincipalDep,
    context: ContextDep,
    idempotency_key: Annotated[str, Query(min_length=1, max_length=200, pattern=_TEXT)],
    tin: Annotated[
        str | None, Query(pattern=_TIN, description="Defaults to the key's tin.")
    ] = None,
) -> JobView:
    """Keys are scoped per tin: ``tin`` defaults to the API key's own."""
    tin = tin or principal.tin
    if not principal.admin and tin != principal.tin:
        raise _hidden(idempotency_key)
    with context.engine.connect() as conn:
        row = iq.find_job_by_key(conn, tin, idempotency_key)
        if row is None or not principal.may_access(row.tin, row.bhf_id):
            if row is None and principal.covers_tin(tin):
                raise ApiError(404, "no job with this idempotency_key")
            raise _hidden(idempotency_key)
        return _job_view(conn, row)


@router.get(
    "/requests/{request_id}",
    response_model=RequestView,
    summary="The jobs one POST /v1/jobs first wrote",
    responses={**_AUTH, 404: {"model": ErrorBody, "description": "Unknown request id."}},
)
def get_request(
    request_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
    principal: PrincipalDep,
    context: ContextDep,
) -> RequestView:
    """Records that were already known when the request came keep their first request id."""
    with context.engine.connect() as conn:
        rows = iq.jobs_of_request(conn, request_id, limit=1000)
        if not rows or not all(principal.may_access(r.tin, r.bhf_id) for r in rows):
            if not rows and principal.admin:
                raise ApiError(404, f"no request {request_id}")
            raise ApiError(403, f"no request {request_id} is visible to this API key")
        views = [_job_view(conn, r) for r in rows]
    return RequestView(request_id=request_id, jobs=views)


def _job_view(conn: Connection, row: Any) -> JobView:
    """The view of ``row``; a superseded stock master shows the send that carries it, a
    merged send's carrier the stock-outs it carries."""
    carrier, merged = None, None
    if row.state == JobState.SUPERSEDED.value:
        carrier = cq.superseding_job(conn, int(row.id))
    elif row.kind == JobKind.STOCK_IO.value and row.merged_into is None:
        merged = iq.merged_member_ids(conn, int(row.id))
    deps = iq.dependency_keys(conn, int(row.id))
    return job_view(row, deps, carrier=carrier, merged=merged)
