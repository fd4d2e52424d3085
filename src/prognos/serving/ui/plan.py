"""The Plan page: the maintenance plan over the served model's latest predictions, from the same
library call as ``GET /plan`` (``prognos.planning.plan_from_store``), beside the riskiest-first
baseline it is judged against."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from prognos.errors import NotFoundError, PrognosError
from prognos.planning import plan_from_store
from prognos.serving.ui.fleet import templates
from prognos.serving.ui.web import SessionDep, render, runtime_of

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/plan", response_class=HTMLResponse)
async def plan(
    request: Request,
    session: SessionDep,
    crews: Annotated[int, Query(ge=1, le=10_000)] = 5,
    days: Annotated[int, Query(ge=1, le=60)] = 7,
    cycles_per_day: Annotated[float, Query(gt=0, le=1e6)] = 1.0,
) -> HTMLResponse:
    """Which asset to inspect on which day with ``crews`` inspections a day over ``days``."""
    runtime = runtime_of(request)
    db = runtime.core.db
    assert db is not None
    name = runtime.core.model_name or runtime.settings.model_name
    context: dict[str, Any] = {
        "active": "plan", "crews": crews, "days": days, "cycles_per_day": cycles_per_day,
    }  # fmt: skip
    try:
        if name is None:
            raise NotFoundError("no model is served, so there are no predictions to plan from")
        comparison = await run_in_threadpool(
            lambda: plan_from_store(db, name, crews=crews, days=days, time_per_day=cycles_per_day)
        )
    except PrognosError as exc:  # no predictions yet, a capacity the planner refuses
        context["plan_error"] = str(exc)
    else:
        by_day: dict[int, list[Any]] = {}
        for visit in comparison.plan.visits:
            by_day.setdefault(visit.day, []).append(visit)
        context.update(comparison=comparison, by_day=sorted(by_day.items()), name=name)
    return render(templates, request, "plan.html", context, session=session)
