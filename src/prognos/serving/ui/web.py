"""What every dashboard page shares: the templates, the signed-in user (or a redirect to sign
in), the scope and CSRF checks of forms, and rendering with the security headers.

Scopes are enforced here, on the server: a page only hides what a user may not do, and a form
posted without the scope gets 403 with nothing changed.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from prognos.errors import PrognosError
from prognos.serving.runtime import Runtime
from prognos.serving.ui.sessions import COOKIE, Session, SessionStore

HERE = Path(__file__).parent
# Scripts only from this origin (the vendored htmx and uPlot, the page script); chart data rides
# in JSON <script> blocks that are never executed. Inline style attributes draw the bars.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
NAV = [
    ("fleet", "Fleet", "/ui/"),
    ("alerts", "Alerts", "/ui/alerts"),
    ("models", "Models", "/ui/models"),
    ("monitoring", "Monitoring", "/ui/monitoring"),
    ("plan", "Plan", "/ui/plan"),
]


class SignInRequired(PrognosError):  # noqa: N818 - a redirect, not a failure
    """No live session: the page redirects to the sign-in form (see ``install``)."""

    def __init__(self, next_url: str) -> None:
        super().__init__("sign in first")
        self.next_url = next_url


class CsrfError(PrognosError):
    """A form posted without this session's CSRF token, or from another origin (HTTP 403)."""


def _ago(value: datetime | None) -> str:
    """``3 min ago`` style: how long since ``value``."""
    if value is None:
        return "never"
    seconds = max(0.0, (datetime.now(UTC) - value).total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN
        return "–"
    return f"{number:,.{digits}f}"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescapes .html
    templates.env.filters.update(ago=_ago, num=_num, when=_when)
    templates.env.globals["nav"] = NAV
    return templates


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def store_of(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.ui_sessions
    return store


async def current_session(request: Request) -> Session:
    """The signed-in user's session, or :class:`SignInRequired`."""
    request.state.ui_started = time.perf_counter()
    token = request.cookies.get(COOKIE)
    session = await run_in_threadpool(store_of(request).find, token) if token else None
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return session


SessionDep = Annotated[Session, Depends(current_session)]


def same_origin(request: Request) -> bool:
    """A browser's POST names its origin; one from another host is refused even with a token.
    Hosts only: behind a proxy (``deploy/nginx``) the scheme and port the service sees are not
    the browser's."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).hostname == request.url.hostname


async def checked_form(
    request: Request, session: SessionDep, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Session:
    """A session whose form carried its CSRF token and came from this origin."""
    if not hmac.compare_digest(csrf_token.encode(), session.csrf.encode()):
        raise CsrfError("the form's CSRF token is missing or stale: reload the page")
    if not same_origin(request):
        raise CsrfError("a form from another origin")
    return session


FormSession = Annotated[Session, Depends(checked_form)]


def render(
    templates: Jinja2Templates,
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: Session | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The template with the user, the CSRF token and the security headers; ``Server-Timing``
    says how long the server took (the dashboard benchmark reads it)."""
    response = templates.TemplateResponse(
        request,
        name,
        {"session": session, "csrf": session.csrf if session else "", **context},
        status_code=status_code,
    )
    secure_headers(response)
    started = getattr(request.state, "ui_started", None)
    if started is not None:
        elapsed = 1000 * (time.perf_counter() - started)
        response.headers["Server-Timing"] = f"app;dur={elapsed:.1f}"
    return response


def secure_headers(response: HTMLResponse | RedirectResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"


def sign_in_redirect(next_url: str) -> RedirectResponse:
    return RedirectResponse(f"/ui/login?next={quote(next_url, safe='/')}", status_code=303)


def safe_next(next_url: str | None) -> str:
    """Where to go after signing in: only a dashboard path (no open redirect)."""
    if not next_url or not next_url.startswith("/ui") or next_url.startswith("//"):
        return "/ui/"
    if "\\" in next_url or any(ord(c) < 32 for c in next_url):
        return "/ui/"
    return next_url
