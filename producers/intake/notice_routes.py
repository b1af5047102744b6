"""``/api/v1/notices``: KRA notices in the shape of the notices API the product was specified from.

=======  =====================================================  ================================
method   path                                                   answer
=======  =====================================================  ================================
GET      /api/v1/notices?bhf_id&is_read&per_page&page           a page, newest first, with meta
GET      /api/v1/notices/unread/count?bhf_id                    ``{"unread_count": N}``
GET      /api/v1/notices/{id}                                   one notice with ``raw_data``
POST     /api/v1/notices/{id}/read                              the notice, marked read
POST     /api/v1/notices/sync  ``{"bhf_id", "last_req_dt"?}``   ``{"synced": N}`` new notices
=======  =====================================================  ================================

Every success is ``{"status": "success", "data": ...}``; errors keep the intake's one shape
(``{"errors": [...]}``). Scope is the Bearer key's, as on ``/v1/notices``: another tin's key
sees nothing of ours (403 when it names our tin or branch, 404 for our notice ids), and a
branch-scoped key sees only its branches. ``tin`` (query or body) is for admin keys; any other
key is held to its own tin. The older ``/v1/notices`` routes stay as aliases.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from producers.apikeys import Principal
from producers.intake.deps import ContextDep, PrincipalDep
from producers.intake.errors import ApiError
from producers.intake.models import ErrorBody
from schemas.types import BHF_ID_RE, TIN_RE
from worker.notices import mark_read, notice_view
from worker.outbox import ops_queries as oq

router = APIRouter(prefix="/api/v1/notices", tags=["notices"])

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
_TIN = TIN_RE
_BHF = BHF_ID_RE

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        401: "Missing, unknown or revoked key.",
        403: "Outside this API key's tin or branches.",
        404: "No such notice (or not visible to this key).",
        422: "Invalid input; errors name the path.",
        429: "Rate limit of the key; see Retry-After.",
        502: "KRA (or the simulator) did not answer the sync.",
        503: "Notice sync is not available in this process.",
    }.items()
}


class Meta(BaseModel):
    current_page: int
    per_page: int
    total: int
    last_page: int
    #: when the page was read (UTC, ISO 8601)
    timestamp: str


class NoticePage(BaseModel):
    status: str = "success"
    data: list[dict[str, Any]]
    meta: Meta


class NoticeOne(BaseModel):
    status: str = "success"
    data: dict[str, Any]


class UnreadCount(BaseModel):
    unread_count: int


class UnreadCountAnswer(BaseModel):
    status: str = "success"
    data: UnreadCount


class SyncRequest(BaseModel):
    bhf_id: str = Field(pattern=_BHF)
    #: fetch from this KRA timestamp (yyyyMMddHHmmss) instead of the stored one
    last_req_dt: str | None = Field(default=None, pattern=r"^[0-9]{14}$")
    #: admin keys only: the taxpayer (other keys are held to their own)
    tin: str | None = Field(default=None, pattern=_TIN)


class Synced(BaseModel):
    synced: int


class SyncAnswer(BaseModel):
    status: str = "success"
    data: Synced


def _tin_for(principal: Principal, tin: str | None) -> str | None:
    """The tin a request may cover: any (or all) for admin keys, else the key's own."""
    if principal.admin:
        return tin
    if tin is not None and tin != principal.tin:
        raise ApiError(403, f"tin {tin} is outside this API key's scope")
    return principal.tin


def _branches_for(principal: Principal, tin: str | None, bhf_id: str | None) -> list[str] | None:
    """Branches a request may cover (None: every branch); 403 for a branch outside the key."""
    if bhf_id is not None:
        if not principal.admin and not principal.may_access(tin or principal.tin, bhf_id):
            raise ApiError(403, f"branch {principal.tin}/{bhf_id} is outside this API key's scope")
        return [bhf_id]
    if principal.admin or not principal.branches:
        return None
    return sorted(principal.branches)


@router.get("", response_model=NoticePage, summary="KRA notices, newest first", responses=_ERRORS)
def list_notices(
    principal: PrincipalDep,
    context: ContextDep,
    bhf_id: Annotated[str | None, Query(pattern=_BHF)] = None,
    is_read: bool | None = None,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = DEFAULT_PER_PAGE,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    tin: Annotated[str | None, Query(pattern=_TIN, description="Admin keys only.")] = None,
) -> NoticePage:
    tin = _tin_for(principal, tin)
    branches = _branches_for(principal, tin, bhf_id)
    with context.engine.connect() as conn:
        rows, total = oq.page_notices(
            conn,
            tin=tin,
            bhf_ids=branches,
            is_read=is_read,
            limit=per_page,
            offset=(page - 1) * per_page,
        )
    meta = Meta(
        current_page=page,
        per_page=per_page,
        total=total,
        last_page=max(1, math.ceil(total / per_page)),
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return NoticePage(data=[notice_view(r) for r in rows], meta=meta)


@router.get(
    "/unread/count", response_model=UnreadCountAnswer, summary="Unread notices", responses=_ERRORS
)
def unread_count(
    principal: PrincipalDep,
    context: ContextDep,
    bhf_id: Annotated[str | None, Query(pattern=_BHF)] = None,
    tin: Annotated[str | None, Query(pattern=_TIN, description="Admin keys only.")] = None,
) -> UnreadCountAnswer:
    tin = _tin_for(principal, tin)
    branches = _branches_for(principal, tin, bhf_id)
    with context.engine.connect() as conn:
        total = oq.count_notices(conn, tin=tin, bhf_ids=branches, is_read=False)
    return UnreadCountAnswer(data=UnreadCount(unread_count=total))


@router.post("/sync", response_model=SyncAnswer, summary="Sync a branch now", responses=_ERRORS)
async def sync_notices(
    request: Annotated[SyncRequest, Body()], principal: PrincipalDep, context: ContextDep
) -> SyncAnswer:
    """Ask KRA for the branch's notices (since its stored ``lastReqDt``, or ``last_req_dt``);
    ``synced`` counts the notices stored for the first time."""
    tin = _tin_for(principal, request.tin) or principal.tin
    _branches_for(principal, tin, request.bhf_id)
    if context.notice_sync is None:
        raise ApiError(503, "notice sync is not configured in this intake process")
    result = await run_in_threadpool(context.notice_sync, tin, request.bhf_id, request.last_req_dt)
    if result.outcome == "no_device":
        raise ApiError(404, f"no initialised device for {tin}/{request.bhf_id}")
    if result.outcome not in ("accepted", "empty"):
        raise ApiError(502, f"KRA did not answer the notice sync ({result.outcome}); retry later")
    return SyncAnswer(data=Synced(synced=result.stored))


_ID = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _visible(principal: Principal, context: ContextDep, notice_id: int) -> Any:
    with context.engine.connect() as conn:
        row = oq.get_notice(conn, notice_id)
    if row is None or not principal.may_access(row.tin, row.bhf_id):
        raise ApiError(404, f"no notice {notice_id}")
    return row


@router.get("/{notice_id}", response_model=NoticeOne, summary="One notice", responses=_ERRORS)
def get_notice(notice_id: _ID, principal: PrincipalDep, context: ContextDep) -> NoticeOne:
    """The notice with ``raw_data``: KRA's row as received (null for notices synced before)."""
    return NoticeOne(data=notice_view(_visible(principal, context, notice_id), raw=True))


@router.post(
    "/{notice_id}/read", response_model=NoticeOne, summary="Mark a notice read", responses=_ERRORS
)
def read_notice(notice_id: _ID, principal: PrincipalDep, context: ContextDep) -> NoticeOne:
    """Idempotent: the first reader is kept."""
    _visible(principal, context, notice_id)
    view = mark_read(context.engine, notice_id, f"api:{principal.key_id}")
    assert view is not None
    return NoticeOne(data=view)
