"""The operator dashboard under ``/ui``: server-rendered pages (Jinja2) with htmx for partial
updates and uPlot for charts, both vendored under ``static/vendor`` (no CDN: it works offline).

``install(app, settings)`` adds the pages, the static files, the session store and the error
pages of ``/ui`` (HTML there; every other path keeps its JSON errors).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from prognos.config import Settings
from prognos.errors import PrognosError
from prognos.serving.errors import status_for
from prognos.serving.ui import fleet, operations, plan
from prognos.serving.ui.sessions import MemoryBackend, RedisBackend, SessionBackend, SessionStore
from prognos.serving.ui.web import HERE, CsrfError, SignInRequired, render, sign_in_redirect
from prognos.storage import api_keys

__all__ = ["install"]


def _backend(settings: Settings) -> SessionBackend:
    if settings.redis_url is None:
        return MemoryBackend()
    import redis

    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_timeout=0.5, socket_connect_timeout=0.5
    )
    return RedisBackend(client, settings.redis_namespace)


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the dashboard on ``app`` (after the API's error handlers, which it wraps)."""

    def revoked() -> set[str]:
        db = app.state.runtime.core.db
        return set() if db is None else api_keys.revoked_api_key_hashes(db)

    app.state.ui_sessions = SessionStore(
        _backend(settings), settings.ui_session_hours * 3600, revoked
    )
    app.state.ui_business = {}  # savings per model version (see operations._business)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    for router in (fleet.router, operations.router, plan.router):
        app.include_router(router)
    _error_pages(app)


def _error_pages(app: FastAPI) -> None:
    api_error = app.exception_handlers[PrognosError]
    api_invalid = app.exception_handlers[RequestValidationError]

    async def prognos_error(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith("/ui"):
            return await _answer(api_error(request, exc))
        if isinstance(exc, SignInRequired):
            return sign_in_redirect(exc.next_url)
        status = 403 if isinstance(exc, CsrfError) else status_for(exc)
        return _error_page(request, status, str(exc))

    async def invalid(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith("/ui"):
            return await _answer(api_invalid(request, exc))
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        return _error_page(request, 422, problems)

    app.add_exception_handler(PrognosError, prognos_error)
    app.add_exception_handler(RequestValidationError, invalid)


async def _answer(result: Response | Awaitable[Response]) -> Response:
    return await result if inspect.isawaitable(result) else result


def _error_page(request: Request, status: int, message: str) -> Response:
    context: dict[str, Any] = {"status": status, "message": message, "active": ""}
    return render(fleet.templates, request, "error.html", context, status_code=status)
