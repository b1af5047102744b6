"""The one error shape of the API (``{"errors": [{index, path, message}]}``) and its handlers.

Routes raise :class:`ApiError`; FastAPI's own errors (bad path or query parameters, unknown
routes, wrong methods) are translated here, so a client and a fuzzer see one shape for every
4xx, and nothing a client sends turns into a 500.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from producers.intake.models import ErrorBody, ErrorItem


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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
