"""One place that turns failures into answers: `{"error": code, "detail": ..., ...}`.

AppError subclasses carry their own status. Body validation failures are 422 (400 when the JSON
itself is malformed). An unreachable database is 503. Anything else is a bug: 500 with no trace
in the answer, the trace in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.http.request_id import request_id_in
from app.platform import logs
from app.platform.errors import AppError

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def error_response(status: int, code: str, detail: Any, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": code, "detail": detail, **extra}, status_code=status, headers=headers
    )


def _clean(errors: list[Any]) -> list[dict[str, Any]]:
    # Never echo the input back: it may be huge, private, or not JSON-serialisable (NaN).
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]


def _malformed(errors: list[dict[str, Any]]) -> bool:
    return any(e["type"] == "json_invalid" for e in errors)


def refusal_code(exc: Exception) -> str | None:
    """The error code of the 4xx answer `exc` is turned into below, or None when it is the
    service's failure (a 5xx): what the intake metrics count a refused submission by."""
    if isinstance(exc, AppError):
        return exc.code if exc.status < 500 else None
    if isinstance(exc, RequestValidationError):
        return "malformed_json" if _malformed(_clean(list(exc.errors()))) else "validation_error"
    if isinstance(exc, StarletteHTTPException) and exc.status_code < 500:
        return _STATUS_CODES.get(exc.status_code, "http_error")
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.detail, **exc.extra)
        if exc.status == 429:
            response.headers["Retry-After"] = str(exc.extra.get("retry_after_s", 1))
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean(list(exc.errors()))
        if _malformed(errors):
            return error_response(
                400, "malformed_json", "the body is not valid JSON", errors=errors
            )
        return error_response(422, "validation_error", "the request is invalid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, exc.detail)

    @app.exception_handler(OperationalError)
    @app.exception_handler(ConnectionError)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return error_response(
            503, "database_unavailable", "the database is unavailable; retry shortly"
        )

    @app.exception_handler(PoolTimeout)
    async def _busy(_: Request, exc: PoolTimeout) -> JSONResponse:
        # Every database connection stayed busy for the pool's whole timeout: the service is
        # overloaded, not broken. Nothing was written; the client should come back shortly.
        log.warning("no database connection free in time: %s", exc)
        response = error_response(
            503, "overloaded", "the service is busy; retry shortly", retry_after_s=1
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(DBAPIError)
    async def _dbapi(_: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return error_response(
                503, "database_unavailable", "the database is unavailable; retry shortly"
            )
        log.exception("database error", exc_info=exc)
        return error_response(500, "internal_error", "an internal error occurred")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers this one outside every middleware, once the request's log context
        # is gone: the request id comes back from the scope (app/http/request_id.py).
        rid = request_id_in(request.scope)
        with logs.bind(request_id=rid):
            log.exception("unhandled error", exc_info=exc)
        response = error_response(500, "internal_error", "an internal error occurred")
        if rid is not None:
            response.headers["X-Request-ID"] = rid
        return response
