"""The one error shape of the API (``{"errors": [{index, path, message}]}``) and its handlers.

Routes raise :class:`ApiError`; FastAPI's own errors (bad path or query parameters, unknown
routes, wrong methods) are translated here, so a client and a fuzzer see one shape for every
4xx, and nothing a client sends turns into a 500.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence

import kombu.exceptions
import psycopg
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from producers.intake.models import ErrorBody, ErrorItem
from worker.outbox.dberrors import DbFailure, classify, describe

log = logging.getLogger("etims_relay.intake")

#: Seconds a client is asked to wait after a 503 (database or broker unavailable).
RETRY_AFTER_S = 1

#: Exceptions of a dependency rather than of the request: the database's (both drivers and
#: SQLAlchemy's wrappers) and the broker's or Redis's connection errors.
_DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    psycopg.Error,
    sqlite3.Error,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)


class ApiError(Exception):
    """An answer other than success; nothing was written."""

    def __init__(
        self,
        status: int,
        errors: Sequence[ErrorItem] | str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.errors = [ErrorItem(message=errors)] if isinstance(errors, str) else list(errors)
        self.headers = dict(headers or {})
        super().__init__(f"{status}: {self.errors[0].message if self.errors else ''}")


def unavailable(failure: DbFailure = DbFailure.UNAVAILABLE) -> ApiError:
    """503 + Retry-After: nothing was written, the same request may simply be sent again."""
    reason = "concurrent writes" if failure is DbFailure.CONFLICT else "outbox unavailable"
    return ApiError(503, f"{reason}; retry", {"Retry-After": str(RETRY_AFTER_S)})


def error_response(
    status: int, errors: Iterable[ErrorItem], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(errors=list(errors)).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _location(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.errors, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = [ErrorItem(path=_location(e["loc"]), message=str(e["msg"])) for e in exc.errors()]
    return error_response(422, items)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, [ErrorItem(message=str(exc.detail))], exc.headers)


async def _dependency_error(_: Request, exc: Exception) -> JSONResponse:
    """A database or broker failure on any route is a 503, never a 500 (the pool replaces
    a broken connection on the next checkout, see worker.outbox.db)."""
    failure = classify(exc)
    is_broker = isinstance(
        exc,
        redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | kombu.exceptions.OperationalError,
    )
    if failure is None and not is_broker:
        raise exc  # a bug, not an outage: the server error middleware reports it
    log.warning("request failed on a dependency: %s", describe(exc))
    error = unavailable(failure or DbFailure.UNAVAILABLE)
    if is_broker:
        error = ApiError(503, "broker unavailable; retry", error.headers)
    return error_response(error.status, error.errors, error.headers)


def install_error_handlers(app: FastAPI) -> None:
    for error_class in _DEPENDENCY_ERRORS:
        app.add_exception_handler(error_class, _dependency_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
