"""GET /plan: the inspection schedule over the served model's latest predictions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from prognos.errors import NotFoundError
from prognos.planning import plan_from_store
from prognos.serving.deps import Reader, RuntimeDep
from prognos.serving.plan_schemas import PlanOut

router = APIRouter(tags=["plan"])


@router.get("/plan", response_model=PlanOut)
async def get_plan(
    runtime: RuntimeDep,
    _: Reader,
    crews: Annotated[int, Query(ge=1, le=10_000, description="Inspections a day.")],
    days: Annotated[int, Query(ge=1, le=366, description="Days planned, 1 = today.")],
    cycles_per_day: Annotated[
        float, Query(gt=0, le=1e6, description="The fleet's time units (cycles) in one day.")
    ] = 1.0,
) -> PlanOut:
    """Which asset to inspect on which day, at most ``crews`` a day, to minimise the expected
    cost of missed failures and inspections; beside it, inspecting the riskiest first."""
    assert runtime.core.db is not None
    name = runtime.core.model_name
    if name is None:
        raise NotFoundError("no model is served, so there are no predictions to plan from")
    comparison = await run_in_threadpool(
        plan_from_store,
        runtime.core.db,
        name,
        crews=crews,
        days=days,
        time_per_day=cycles_per_day,
    )
    return PlanOut.of(name, comparison)
