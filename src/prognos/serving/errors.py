"""The one place errors become HTTP responses: status by exception type, a message that names the
problem, never a stack trace."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from prognos.errors import (
    ConfigError,
    ConflictingReadingError,
    DataValidationError,
    NotFoundError,
    OutOfOrderReadingError,
    PrognosError,
    ReadingRejectedError,
    SchemaError,
    StateStoreError,
    StorageUnavailableError,
)
from prognos.ingestion.readings import ID_PATTERN, ID_RULE
from prognos.ingestion.scoring import NoModelError
from prognos.serving.ratelimit import RateLimitedError
from prognos.serving.security import AuthError, ForbiddenError

log = logging.getLogger("prognos.serving")


class PayloadTooLargeError(PrognosError):
    """The request body exceeds the configured limit (HTTP 413)."""


class FieldConflictError(PrognosError):
    """A field that passed the schema contradicts what is stored (HTTP 422); ``field`` names it
    as a validation error would."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# Most specific first: the first match wins.
STATUS: list[tuple[type[PrognosError], int]] = [
    (PayloadTooLargeError, 413),
    (FieldConflictError, 422),
    (AuthError, 401),
    (ForbiddenError, 403),
    (RateLimitedError, 429),
    (NotFoundError, 404),
    (OutOfOrderReadingError, 409),
    (ConflictingReadingError, 409),
    (ReadingRejectedError, 422),
    (SchemaError, 422),
    (DataValidationError, 422),
    (ConfigError, 422),
    (StateStoreError, 503),
    (StorageUnavailableError, 503),
    (NoModelError, 503),
]


# Validation errors listed in one response; a 10 000-reading batch could have as many.
MAX_ERRORS = 50
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def status_for(exc: Exception) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400 if isinstance(exc, PrognosError) else 500


def error_body(exc: Exception) -> dict[str, object]:
    body: dict[str, object] = {"error": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, ReadingRejectedError):
        body["reason"] = exc.reason
    if isinstance(exc, FieldConflictError):
        body["errors"] = [{"field": exc.field, "in": "body", "message": exc.message}]
    return body


def _safe_text(text: str, limit: int = 200) -> str:
    """Text that encodes as UTF-8 (a lone surrogate from a JSON escape would not), cut short."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def field_path(loc: Sequence[str | int]) -> str:
    """``("readings", 3, "sensor_readings", "s_2")`` as ``readings[3].sensor_readings.s_2``; names
    that are not identifiers are quoted (``sensor_readings["a.b"]``)."""
    path = ""
    for part in loc:
        if isinstance(part, int) or part == "[key]":  # pydantic's marker of a dict key's error
            path += f"[{part}]" if isinstance(part, int) else part
        elif _NAME.fullmatch(part):
            path += f".{part}" if path else part
        else:  # ensure_ascii escapes NUL, control characters and surrogates
            path += f"[{json.dumps(part)}]"
    return path


def _echo(value: Any) -> Any:
    """The invalid input where JSON can carry it (scalars only: a missing field's input is the
    whole enclosing object); a non-finite number as its JSON spelling."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return _safe_text(value)
    return None


def validation_error_body(errors: Sequence[Any]) -> dict[str, object]:
    """FastAPI's validation errors as a JSON-safe body: for each, where (``in``: body, path,
    query or header; ``field``: a readable path) and what is wrong. FastAPI's own body echoes
    every input and fails to render NaN, infinities and lone surrogates (a 500)."""
    items: list[dict[str, Any]] = []
    for error in errors[:MAX_ERRORS]:
        where, *loc = error.get("loc") or ("body",)
        kind, ctx = str(error.get("type")), error.get("ctx") or {}
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if kind == "json_invalid":  # the location is a character position, not a field
            message = f"invalid JSON at character {loc[0] if loc else 0}: {ctx.get('error', '')}"
            loc = []
        elif kind == "string_pattern_mismatch" and ctx.get("pattern") == ID_PATTERN:
            message = ID_RULE
        item = {
            "field": field_path(loc),
            "in": str(where),
            "type": kind,
            "message": _safe_text(message, 500),
        }
        if kind != "json_invalid" and (echo := _echo(error.get("input"))) is not None:
            item["input"] = echo
        items.append(item)
    shown = [f"{i['field'] or i['in']}: {i['message']}" for i in items[:3]]
    if len(errors) > 3:
        shown.append(f"and {len(errors) - 3} more")
    return {"error": "RequestValidationError", "detail": "; ".join(shown), "errors": items}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_error_body(exc.errors()), status_code=422)

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
