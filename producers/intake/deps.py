"""What every route needs: the intake context and the authenticated, rate-limited principal.

Authentication is ``Authorization: Bearer <api key>`` (see :mod:`producers.apikeys`). A
missing or unknown key is 401; a key over its rate budget is 429 with ``Retry-After``.
Scope checks (403) happen in the routes, where the tin and branch are known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from producers.apikeys import Principal, authenticate
from producers.enqueue import EnqueueOptions
from producers.intake.errors import ApiError
from producers.intake.ratelimit import KeyRateLimiter
from worker.notices import SyncResult
from worker.wake import Waker

#: Ask KRA for one branch's notices now: (tin, bhf_id, lastReqDt or None for the stored one).
NoticeSync = Callable[[str, str, str | None], SyncResult]


@dataclass
class IntakeContext:
    """Per-process wiring of the intake app, built by the entry point."""

    engine: Engine
    waker: Waker
    options: EnqueueOptions
    limiter: KeyRateLimiter
    broker_url: str
    ready_timeout_s: float = 2.0
    #: ``POST /api/v1/notices/sync``; None answers 503 (no OSCU client in this process)
    notice_sync: NoticeSync | None = None


def get_context(request: Request) -> IntakeContext:
    context = request.app.state.intake
    assert isinstance(context, IntakeContext)
    return context


ContextDep = Annotated[IntakeContext, Depends(get_context)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `etims-relay apikey create`.")


def require_key(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller's principal; 401 without a valid key, 429 over its rate limit."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "missing API key: send Authorization: Bearer <key>", challenge)
    principal = authenticate(context.engine, credentials.credentials)
    if principal is None:
        raise ApiError(401, "unknown or revoked API key", challenge)
    wait = context.limiter.retry_after(principal.key_id)
    if wait is not None:
        raise ApiError(
            429,
            f"rate limit of this API key exceeded; retry in {wait}s",
            {"Retry-After": str(wait)},
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(require_key)]
