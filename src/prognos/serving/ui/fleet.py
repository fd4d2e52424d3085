"""Sign-in and sign-out, the Fleet page (assets ranked by risk, filtered and paged in SQL, with
an htmx partial for the table) and the Asset page with its feedback form."""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from prognos.errors import NotFoundError, PrognosError
from prognos.ingestion.readings import AssetId, is_timestamp_time
from prognos.serving.errors import field_path
from prognos.serving.routers.feedback import feedback as record_feedback
from prognos.serving.schemas import FeedbackIn
from prognos.serving.security import ANONYMOUS, AuthError, ForbiddenError
from prognos.serving.ui import views
from prognos.serving.ui.sessions import COOKIE, COOKIE_PATH, LOGIN_COOKIE
from prognos.serving.ui.web import (
    FormSession,
    SessionDep,
    make_templates,
    render,
    runtime_of,
    safe_next,
    secure_headers,
    store_of,
)
from prognos.storage import alerts as alert_store
from prognos.storage import dashboard, repository
from prognos.storage.api_keys import hash_key

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = make_templates()
PAGE_SIZE = 50
HISTORY = 200  # predictions drawn on the asset page
READINGS = 300  # readings drawn on the asset page


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name, value, max_age=age, path=COOKIE_PATH, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


@router.get("/login", response_model=None)
async def login_form(request: Request, next: str | None = None) -> Response:
    """The sign-in form (its own CSRF token in a cookie); without keys (the local demo) the
    user is signed in at once."""
    runtime = runtime_of(request)
    target = safe_next(next)
    if not runtime.settings.auth_enabled:
        return _signed_in(request, ANONYMOUS, "", target)
    token = secrets.token_urlsafe(24)
    response = render(templates, request, "login.html", {"next": target, "login_csrf": token})
    _set_cookie(request, response, LOGIN_COOKIE, token, 3600)
    return response


@router.post("/login", response_model=None)
async def login(
    request: Request,
    api_key: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/ui/",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Exchange an API key with the ``read`` scope for a session cookie (the key is checked as
    the API checks it, and never stored in the cookie)."""
    runtime = runtime_of(request)
    target = safe_next(next)
    if not runtime.settings.auth_enabled:
        return _signed_in(request, ANONYMOUS, "", target)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    error = None
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        error, status = "The sign-in form expired: please try again.", 403
    elif not api_key.strip():
        error, status = "Enter an API key.", 401
    else:
        assert runtime.keys is not None
        try:
            principal = await run_in_threadpool(runtime.keys.principal, api_key.strip())
            principal.require("read")
        except AuthError:
            error, status = "Unknown or revoked API key.", 401
        except ForbiddenError:
            error, status = "This key lacks the read scope the dashboard needs.", 403
        else:
            return _signed_in(request, principal, hash_key(api_key.strip()), target)
    token = secrets.token_urlsafe(24)
    context = {"next": target, "login_csrf": token, "error": error}
    response = render(templates, request, "login.html", context, status_code=status)
    _set_cookie(request, response, LOGIN_COOKIE, token, 3600)
    return response


def _signed_in(request: Request, principal: Any, key_hash: str, target: str) -> Response:
    store = store_of(request)
    token, _ = store.open(principal, key_hash)
    response = RedirectResponse(target, status_code=303)
    secure_headers(response)
    _set_cookie(request, response, COOKIE, token, int(store.lifetime))
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request, session: FormSession) -> Response:
    store_of(request).close(request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    secure_headers(response)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


# ----------------------------------------------------------------------------------- fleet


def _filter(q: str, risk: str, inspect: str) -> dashboard.FleetFilter:
    return dashboard.FleetFilter(
        search=q.strip(),
        risk=risk if risk in dashboard.RISK_LEVELS else None,
        inspect_only=inspect in ("1", "on", "true"),
    )


Search = Annotated[str, Query(max_length=128)]
Risk = Annotated[str, Query(max_length=16)]
Flag = Annotated[str, Query(max_length=8)]
PageNo = Annotated[int, Query(ge=1, le=100_000)]


async def _fleet_context(request: Request, q: str, risk: str, inspect: str, page: int) -> dict:
    runtime = runtime_of(request)
    assert runtime.core.db is not None
    flt = _filter(q, risk, inspect)
    result = await run_in_threadpool(
        dashboard.fleet_page, runtime.core.db, flt, (page - 1) * PAGE_SIZE, PAGE_SIZE
    )
    pages = max(1, -(-result.total // PAGE_SIZE))
    rows = [
        {
            **r,
            "interval": views.interval(r["rul_lower"], r["rul_upper"]),
            "received": result.last_received.get((r["fleet"], r["asset_id"])),
        }
        for r in result.rows
    ]
    return {
        "rows": rows, "total": result.total, "page": page, "pages": pages, "filter": flt,
        "offset": result.offset, "risk_levels": dashboard.RISK_LEVELS,
    }  # fmt: skip


@router.get("/", response_class=HTMLResponse)
@router.get("/fleet", response_class=HTMLResponse)
async def fleet(
    request: Request, session: SessionDep, q: Search = "", risk: Risk = "", inspect: Flag = "",
    page: PageNo = 1,
) -> HTMLResponse:  # fmt: skip
    """Every asset's latest prediction, riskiest first, and the fleet's risk distribution."""
    runtime = runtime_of(request)
    assert runtime.core.db is not None
    context = await _fleet_context(request, q, risk, inspect, page)
    dist = await run_in_threadpool(dashboard.risk_distribution, runtime.core.db)
    top = max(dist["bins"]) or 1
    context["distribution"] = {**dist, "heights": [round(100 * b / top, 1) for b in dist["bins"]]}
    return render(templates, request, "fleet.html", {"active": "fleet", **context}, session=session)


@router.get("/fleet/rows", response_class=HTMLResponse)
async def fleet_rows(
    request: Request, session: SessionDep, q: Search = "", risk: Risk = "", inspect: Flag = "",
    page: PageNo = 1,
) -> HTMLResponse:  # fmt: skip
    """The table alone: what htmx swaps in as the operator types or filters."""
    context = await _fleet_context(request, q, risk, inspect, page)
    return render(templates, request, "_fleet_rows.html", context, session=session)


# ----------------------------------------------------------------------------------- asset


async def _asset_context(request: Request, asset_id: str) -> dict[str, Any]:
    runtime = runtime_of(request)
    db = runtime.core.db
    assert db is not None
    model = runtime.core.model
    predictions = await run_in_threadpool(repository.predictions_for_asset, db, asset_id, HISTORY)
    readings = await run_in_threadpool(repository.readings_for_asset, db, asset_id, READINGS)
    if not predictions and not readings:
        raise NotFoundError(f"no readings or predictions for asset {asset_id!r}")
    alerts = await run_in_threadpool(
        lambda: alert_store.list_alerts(db, include_resolved=True, limit=50, subject=asset_id)
    )
    feedback = await run_in_threadpool(dashboard.asset_feedback, db, asset_id)
    latest = predictions[0] if predictions else None
    threshold = model.threshold if model is not None else None
    stamped = latest is not None and is_timestamp_time(latest["time"])
    return {
        "active": "fleet",
        "asset_id": asset_id,
        "latest": latest,
        "interval": views.interval(latest["rul_lower"], latest["rul_upper"]) if latest else "",
        "threshold": threshold,
        "history": views.history_series(predictions, threshold),
        "sensors": views.sensor_series(readings, model),
        "waterfall": views.waterfall(latest["explanation"]) if latest else None,
        "alerts": alerts,
        "feedback": feedback,
        "events": views.EVENTS,
        "stamped": stamped,
        "model": model,
    }


@router.get("/assets/{asset_id}", response_class=HTMLResponse)
async def asset(request: Request, asset_id: AssetId, session: SessionDep) -> HTMLResponse:
    """One asset: sensor trends, RUL and risk history, the latest explanation, alerts and
    feedback, and the feedback form for users with the ``ingest`` scope."""
    context = await _asset_context(request, asset_id)
    context["recorded"] = request.query_params.get("recorded") == "1"
    return render(templates, request, "asset.html", context, session=session)


@router.post("/assets/{asset_id}/feedback", response_model=None)
async def post_feedback(
    request: Request,
    asset_id: AssetId,
    session: FormSession,
    failure_occurred: Annotated[str, Form(max_length=8)] = "",
    event: Annotated[str, Form(max_length=32)] = "",
    failure_cycle: Annotated[str, Form(max_length=32)] = "",
    failure_time: Annotated[str, Form(max_length=64)] = "",
    failure_type: Annotated[str, Form(max_length=200)] = "",
    notes: Annotated[str, Form(max_length=10_000)] = "",
    prediction_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Record the operator's outcome through the API's own ``POST /feedback`` (same checks,
    same durable write, ``submitted_by`` the user's key name)."""
    session.principal.require("ingest")
    outcome: dict[str, Any] = {"failure_occurred": failure_occurred == "yes"}
    if event:
        outcome["event"] = event
    if failure_cycle.strip():
        outcome["failure_cycle"] = failure_cycle.strip()
    if failure_time.strip():
        outcome["failure_timestamp"] = _utc(failure_time.strip())
    if failure_type.strip():
        outcome["failure_type"] = failure_type.strip()
    if notes.strip():
        outcome["inspection_notes"] = notes.strip()
    raw = {"equipment_id": asset_id, "actual_outcome": outcome}
    if prediction_id:
        raw["prediction_id"] = prediction_id
    errors: list[str] = []
    try:
        body = FeedbackIn.model_validate(raw)
        await record_feedback(body, runtime_of(request), session.principal)
    except ValidationError as exc:
        errors = [
            f"{field_path(e['loc']).removeprefix('actual_outcome.') or 'form'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
    except PrognosError as exc:  # what POST /feedback refuses, said on the form
        errors = [str(exc)]
    if not errors:
        response = RedirectResponse(f"/ui/assets/{asset_id}?recorded=1#feedback", status_code=303)
        secure_headers(response)
        return response
    context = await _asset_context(request, asset_id)
    context.update(form_errors=errors, form=outcome | {"notes": notes})
    return render(templates, request, "asset.html", context, session=session, status_code=422)


def _utc(text: str) -> str:
    """A ``datetime-local`` value (no zone) read as UTC; one with a zone kept as given."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return text  # the schema names the field and why
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()
