"""The one place errors become HTTP responses: status by exception type, a message that names the
problem, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from prognos.errors import (
    ConfigError,
    DataValidationError,
    NotFoundError,
    OutOfOrderReadingError,
    PrognosError,
    ReadingRejectedError,
    SchemaError,
    StateStoreError,
    StorageUnavailableError,
)
from prognos.serving.scoring import NoModelError
from prognos.serving.security import AuthError, ForbiddenError, RateLimitedError

log = logging.getLogger("prognos.serving")

# Most specific first: the first match wins.
STATUS: list[tuple[type[PrognosError], int]] = [
    (AuthError, 401),
    (ForbiddenError, 403),
    (RateLimitedError, 429),
    (NotFoundError, 404),
    (OutOfOrderReadingError, 409),
    (ReadingRejectedError, 422),
    (SchemaError, 422),
    (DataValidationError, 422),
    (ConfigError, 422),
    (StateStoreError, 503),
    (StorageUnavailableError, 503),
    (NoModelError, 503),
]


class PayloadTooLargeError(PrognosError):
    """The request body exceeds the configured limit (HTTP 413)."""


STATUS.insert(0, (PayloadTooLargeError, 413))


def status_for(exc: Exception) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400 if isinstance(exc, PrognosError) else 500


def error_body(exc: Exception) -> dict[str, object]:
    body: dict[str, object] = {"error": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, ReadingRejectedError):
        body["reason"] = exc.reason
    return body


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PrognosError)
    async def prognos_error(request: Request, exc: PrognosError) -> JSONResponse:
        status = status_for(exc)
        headers = {}
        if isinstance(exc, RateLimitedError):
            headers["Retry-After"] = str(exc.retry_after)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(error_body(exc), status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "InternalError", "detail": "internal error; it has been logged"},
            status_code=500,
        )
