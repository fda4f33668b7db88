"""The one family of application errors. Each knows its HTTP status and machine-readable code.

Services raise these; the HTTP layer has a single handler that renders
`{"error": code, "detail": text, ...extra}`. Nothing below HTTP raises HTTPException.
"""

from __future__ import annotations

from typing import Any, ClassVar

import asyncpg

# What the PostgreSQL driver raises, used directly (app/platform/db.py `direct`,
# app/platform/bulk.py), when the database is away, shutting down, starting up or full: each is
# reported as ConnectionError, which the HTTP layer answers 503 and the engine waits out.
DRIVER_DOWN: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
)
# ... and a statement that ran past its command_timeout, on a connection used directly
DRIVER_LOST: tuple[type[Exception], ...] = (*DRIVER_DOWN, TimeoutError)


class AppError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(AppError):
    status, code = 400, "bad_request"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"


class Forbidden(AppError):
    status, code = 403, "forbidden"


class NotFound(AppError):
    status, code = 404, "not_found"


class CaseNotFound(NotFound):
    code = "case_not_found"


class ReportNotFound(NotFound):
    code = "report_not_found"


class TaskNotFound(NotFound):
    code = "task_not_found"


class InvalidTransition(AppError):
    """The action is impossible in the current state; `state` says which state that is."""

    status, code = 409, "invalid_transition"


class RateLimited(AppError):
    """The principal's or address's budget is spent; `retry_after_s` says when to come back."""

    status, code = 429, "rate_limited"


class PayloadTooLarge(AppError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(AppError):
    status, code = 422, "validation_error"


class OutsideServiceArea(AppError):
    status, code = 422, "outside_service_area"


class UnknownCategory(AppError):
    status, code = 422, "unknown_category"


class InvalidPhoto(AppError):
    status, code = 422, "invalid_photo"


class TooFarFromCase(AppError):
    status, code = 422, "too_far_from_case"


class ServiceUnavailable(AppError):
    status, code = 503, "service_unavailable"
