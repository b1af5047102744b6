"""Operations routes of the intake: ``/metrics``, notices, inbound notifications, replay tooling.

=======  ==========================================  ===========================================
method   path                                        who
=======  ==========================================  ===========================================
GET      /metrics                                    Prometheus (no key: scrape from a private
                                                     network only)
GET      /v1/notices?tin&bhf_id&is_read              API key (its tin/branches)
GET      /v1/notices/unread/count?tin&bhf_id         API key
GET      /v1/notices/{id}                            API key
POST     /v1/notices/{id}/read                       API key
PUT      /v1/notifications                           ``Authorization: ApiKey <key>`` (or a bare
                                                     ``ApiKey`` header) of a registered sender
PUT      /v1/ping                                    the same key: the sender's visibility check
GET      /v1/admin/dead?branch&kind&code&since       admin API key
GET      /v1/admin/jobs/{id}                         admin (payload, attempts, audit)
POST     /v1/admin/jobs/{id}/edit|replay|skip        admin, audited as ``api:<key_id>``
POST     /v1/admin/branches/{tin}/{bhf}/replay       admin
POST     /v1/admin/branches/{tin}/{bhf}/set-next     admin
GET      /v1/admin/audit?job_id&action&since&limit   admin
=======  ==========================================  ===========================================

The logic lives in :mod:`worker.replay`, :mod:`worker.notices`, :mod:`worker.notifications`;
these handlers only authenticate, translate errors to the API's one error shape, and shape JSON.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from producers.apikeys import Principal
from producers.intake.deps import ContextDep, PrincipalDep
from producers.intake.errors import ApiError, error_response
from producers.intake.models import ErrorBody, ErrorItem
from schemas.types import BHF_ID_PATTERN, BHF_ID_RE, TIN_PATTERN, TIN_RE
from worker import metrics, notifications
from worker.notices import mark_read, notice_view
from worker.outbox import ops_queries as oq
from worker.replay import (
    Actor,
    InvalidInput,
    JobNotFound,
    OperatorError,
    audit_row,
    edit,
    job_details,
    replay,
    replay_branch,
    set_next,
    skip,
)

router = APIRouter()

TIN = Annotated[str, Path(pattern=TIN_RE)]
BHF = Annotated[str, Path(pattern=BHF_ID_RE)]
#: Ids are BIGINT: a larger number is a 422, not a database error.
MAX_ID = 2**63 - 1
ID = Annotated[int, Path(ge=1, le=MAX_ID)]
#: PostgreSQL text cannot hold NUL; refuse it at the edge (422) rather than fail later.
TEXT = r"^[^\x00]*$"
Text = Annotated[str | None, Query(max_length=200, pattern=TEXT)]

_DESCRIPTIONS = {
    400: "Malformed request (e.g. a body that is not JSON).",
    401: "Missing, unknown or revoked key.",
    403: "Outside this API key's scope, or not an admin key.",
    404: "No such job, branch or notice (or not visible to this key).",
    409: "The job is not in a state that allows it (e.g. replaying an accepted job).",
    422: "Invalid input; errors name the path.",
    429: "Rate limit of the key; see Retry-After.",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all in the API's one error shape."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


_KEYED = (401, 403, 422, 429)


# --------------------------------------------------------------------------- metrics


@router.get("/metrics", include_in_schema=False)
def get_metrics(context: ContextDep) -> Response:
    """This process's counters plus the scrape-time database gauges."""
    metrics.ensure_db_collector(context.engine, tax_override=context.options.tax_rates)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


# --------------------------------------------------------------------------- notices


@router.get(
    "/v1/notices",
    tags=["notices"],
    summary="KRA notices, newest first",
    responses=_errors(*_KEYED),
)
def list_notices(
    principal: PrincipalDep,
    context: ContextDep,
    tin: Annotated[str | None, Query(pattern=TIN_RE)] = None,
    bhf_id: Annotated[str | None, Query(pattern=BHF_ID_RE)] = None,
    is_read: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    tin = _scoped_tin(principal, tin, bhf_id)
    with context.engine.connect() as conn:
        rows = oq.list_notices(conn, tin=tin, bhf_id=bhf_id, is_read=is_read, limit=limit)
    return [notice_view(r) for r in rows if principal.may_access(r.tin, r.bhf_id)]


@router.get(
    "/v1/notices/unread/count",
    tags=["notices"],
    summary="Unread notices",
    responses=_errors(400, *_KEYED),
)
def unread_count(
    principal: PrincipalDep,
    context: ContextDep,
    tin: Annotated[str | None, Query(pattern=TIN_RE)] = None,
    bhf_id: Annotated[str | None, Query(pattern=BHF_ID_RE)] = None,
) -> dict[str, int]:
    tin = _scoped_tin(principal, tin, bhf_id)
    if principal.branches and bhf_id is None and not principal.admin:
        raise ApiError(400, [ErrorItem(path="bhf_id", message="required for a branch-scoped key")])
    with context.engine.connect() as conn:
        return {"count": oq.unread_notice_count(conn, tin, bhf_id)}


@router.get(
    "/v1/notices/{notice_id}",
    tags=["notices"],
    summary="One notice",
    responses=_errors(404, *_KEYED),
)
def get_notice(notice_id: ID, principal: PrincipalDep, context: ContextDep) -> dict[str, Any]:
    with context.engine.connect() as conn:
        row = oq.get_notice(conn, notice_id)
    if row is None or not principal.may_access(row.tin, row.bhf_id):
        raise ApiError(404, f"no notice {notice_id}")
    return notice_view(row)


@router.post(
    "/v1/notices/{notice_id}/read",
    tags=["notices"],
    summary="Mark a notice read",
    responses=_errors(404, *_KEYED),
)
def read_notice(notice_id: ID, principal: PrincipalDep, context: ContextDep) -> dict[str, Any]:
    get_notice(notice_id, principal, context)  # 404 when unknown or out of scope
    view = mark_read(context.engine, notice_id, _actor(principal).name)
    assert view is not None
    return view


def _scoped_tin(principal: Principal, tin: str | None, bhf_id: str | None) -> str | None:
    """The tin a query may cover: any for admin, else the key's own (403 for another)."""
    if principal.admin:
        return tin
    if tin is not None and tin != principal.tin:
        raise ApiError(403, f"tin {tin} is outside this API key's scope")
    if bhf_id is not None and not principal.may_access(principal.tin, bhf_id):
        raise ApiError(403, f"branch {principal.tin}/{bhf_id} is outside this API key's scope")
    return principal.tin


# --------------------------------------------------------------------------- notifications


def _sender_key(
    authorization: Annotated[str | None, Header()] = None,
    api_key: Annotated[str | None, Header(alias="ApiKey")] = None,
) -> str | None:
    """The sender's key: ``Authorization: ApiKey <key>`` (the authority's form) or ``ApiKey``."""
    if authorization:
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() == "apikey" and key.strip():
            return key.strip()
    return api_key


SenderKeyDep = Annotated[str | None, Depends(_sender_key)]


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from exc


def _rejected(exc: notifications.NotificationRejected) -> ApiError:
    items = [ErrorItem(path=path or None, message=message) for path, message in exc.errors]
    return ApiError(exc.status, items)


@router.put(
    "/v1/notifications",
    tags=["notifications"],
    summary="A device event pushed by an authority (idempotent per delivery)",
    responses=_errors(400, 401, 409, 422),
)
async def put_notification(
    request: Request,
    context: ContextDep,
    api_key: SenderKeyDep,
    accept_language: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    document = await _json_body(request)
    try:
        received = await run_in_threadpool(
            lambda: notifications.receive(
                context.engine, api_key, document, accept_language=accept_language
            )
        )
    except notifications.NotificationRejected as exc:
        raise _rejected(exc) from exc
    return {"id": received.id, "result": received.result, "event": received.event}


@router.put(
    "/v1/ping",
    tags=["notifications"],
    summary="The sender's visibility check: echoes the registration number it sends",
    responses=_errors(400, 401, 422),
)
async def put_ping(request: Request, context: ContextDep, api_key: SenderKeyDep) -> dict[str, str]:
    document = await _json_body(request)
    try:
        return await run_in_threadpool(notifications.ping, context.engine, api_key, document)
    except notifications.NotificationRejected as exc:
        raise _rejected(exc) from exc


# --------------------------------------------------------------------------- replay tooling


def require_admin(principal: PrincipalDep) -> Principal:
    """403 unless the key is an admin key (the relay operator's)."""
    if not principal.admin:
        raise ApiError(403, "this endpoint needs an admin API key")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


_REASON = Field(default="", max_length=2000, pattern=TEXT)


class Reason(BaseModel):
    reason: str = _REASON


class SkipRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, pattern=TEXT)


class EditRequest(BaseModel):
    set: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    reason: str = _REASON


class BranchReplay(BaseModel):
    code: str | None = Field(default=None, max_length=10, pattern=TEXT)
    reason: str = _REASON


class SetNext(BaseModel):
    invc: int | None = Field(default=None, ge=1, le=MAX_ID)
    sar: int | None = Field(default=None, ge=1, le=MAX_ID)
    reason: str = _REASON
    #: Set a number that goes backwards or leaves a gap (needs a reason; audited).
    force: bool = False


def _actor(principal: Principal) -> Actor:
    return Actor(f"api:{principal.key_id}")


async def _operator_error(_: Request, exc: Exception) -> JSONResponse:
    """One mapping for every admin route: an operator action refused is a 404 (no such job),
    422 (bad input) or 409 (not possible in the job's state), with the refusal as message."""
    assert isinstance(exc, OperatorError)
    status = 404 if isinstance(exc, JobNotFound) else 422 if isinstance(exc, InvalidInput) else 409
    return error_response(status, [ErrorItem(message=str(exc))])


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OperatorError, _operator_error)


@router.get(
    "/v1/admin/dead",
    tags=["admin"],
    summary="Dead jobs",
    responses=_errors(*_KEYED),
)
def admin_dead(
    admin: AdminDep,
    context: ContextDep,
    branch: Annotated[str | None, Query(pattern=rf"^{TIN_PATTERN}/{BHF_ID_PATTERN}$")] = None,
    kind: Text = None,
    code: Text = None,
    since: float | None = None,
) -> list[dict[str, Any]]:
    tin, _, bhf = (branch or "").partition("/")
    with context.engine.connect() as conn:
        rows = oq.list_jobs_in_state(
            conn, "dead", tin=tin or None, bhf_id=bhf or None, kind=kind, code=code, since=since
        )
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "branch": f"{r.tin}/{r.bhf_id}",
            "idempotency_key": r.idempotency_key,
            "result_code": r.result_code,
            "message": r.result_message,
            "attempts": r.attempts,
            "died_at": r.updated_at,
        }
        for r in rows
    ]


@router.get(
    "/v1/admin/jobs/{job_id}",
    tags=["admin"],
    summary="A job with every attempt",
    responses=_errors(404, *_KEYED),
)
def admin_job(job_id: ID, admin: AdminDep, context: ContextDep) -> dict[str, Any]:
    return job_details(context.engine, job_id)


@router.post(
    "/v1/admin/jobs/{job_id}/edit",
    tags=["admin"],
    summary="Correct a dead job",
    responses=_errors(400, 404, 409, *_KEYED),
)
def admin_edit(
    job_id: ID, request: Annotated[EditRequest, Body()], admin: AdminDep, context: ContextDep
) -> dict[str, Any]:
    payload = edit(
        context.engine,
        job_id,
        _actor(admin),
        sets=list((request.set or {}).items()),
        payload=request.payload,
        reason=request.reason,
        options=context.options,
    )
    return {"id": job_id, "payload": payload}


@router.post(
    "/v1/admin/jobs/{job_id}/replay",
    tags=["admin"],
    summary="Replay a dead job",
    responses=_errors(400, 404, 409, *_KEYED),
)
def admin_replay(
    job_id: ID, request: Annotated[Reason, Body()], admin: AdminDep, context: ContextDep
) -> dict[str, Any]:
    replay(context.engine, job_id, _actor(admin), reason=request.reason, waker=context.waker)
    return {"id": job_id, "state": "pending"}


@router.post(
    "/v1/admin/jobs/{job_id}/skip",
    tags=["admin"],
    summary="Give up on a job",
    responses=_errors(400, 404, 409, *_KEYED),
)
def admin_skip(
    job_id: ID, request: Annotated[SkipRequest, Body()], admin: AdminDep, context: ContextDep
) -> dict[str, Any]:
    done = skip(context.engine, job_id, _actor(admin), reason=request.reason)
    return {
        "id": job_id,
        "state": "skipped",
        "number_released": done.released,
        "branch_unparked": done.unparked,
        "members_skipped": list(done.members_skipped),
        "members_pending": list(done.members_pending),
        "note": done.describe(),
    }


@router.post(
    "/v1/admin/branches/{tin}/{bhf_id}/replay",
    tags=["admin"],
    summary="Replay a branch",
    responses=_errors(400, 404, 409, *_KEYED),
)
def admin_replay_branch(
    tin: TIN,
    bhf_id: BHF,
    request: Annotated[BranchReplay, Body()],
    admin: AdminDep,
    context: ContextDep,
) -> dict[str, Any]:
    ids = replay_branch(
        context.engine,
        tin,
        bhf_id,
        _actor(admin),
        code=request.code,
        reason=request.reason,
        waker=context.waker,
    )
    return {"replayed": ids}


@router.post(
    "/v1/admin/branches/{tin}/{bhf_id}/set-next",
    tags=["admin"],
    summary="Set KRA's next numbers",
    responses=_errors(400, 404, 409, *_KEYED),
)
def admin_set_next(
    tin: TIN, bhf_id: BHF, request: Annotated[SetNext, Body()], admin: AdminDep, context: ContextDep
) -> dict[str, Any]:
    set_next(
        context.engine,
        tin,
        bhf_id,
        _actor(admin),
        invc_no=request.invc,
        sar_no=request.sar,
        reason=request.reason,
        waker=context.waker,
        force=request.force,
    )
    return {"branch": f"{tin}/{bhf_id}", "invc": request.invc, "sar": request.sar}


@router.get(
    "/v1/admin/audit",
    tags=["admin"],
    summary="The audit log, newest first",
    responses=_errors(*_KEYED),
)
def admin_audit(
    admin: AdminDep,
    context: ContextDep,
    job_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    action: Text = None,
    since: float | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    with context.engine.connect() as conn:
        rows = oq.audit_entries(conn, job_id=job_id, action=action, since=since, limit=limit)
    return [audit_row(r) for r in rows]
