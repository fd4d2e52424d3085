"""GET /monitoring/latest and GET /monitoring/runs: the stored monitoring runs (``prognos monitor
run`` writes them), for dashboards and alerting that want more than the ``/metrics`` gauges."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from prognos.errors import NotFoundError
from prognos.serving.deps import Reader, RuntimeDep
from prognos.storage import monitoring as store

router = APIRouter(tags=["monitoring"])

RunKind = Literal["live", "batch"]


class MonitoringMetricOut(BaseModel):
    name: str = Field(examples=["model_f2_score_current"])
    label: str = Field(description="e.g. the column of a per-feature figure; '' for none.")
    value: float | None = Field(description="null where undefined (e.g. recall without failures).")


class MonitoringRunSummaryOut(BaseModel):
    """A run without its figures: one row of ``/monitoring/runs``."""

    model_config = ConfigDict(protected_namespaces=())

    id: str = Field(examples=["mon_0123456789abcdef0123456789abcdef"])
    kind: str
    fleet: str
    model_name: str
    model_version: str
    started_at: datetime
    finished_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    drift_detected: bool
    share_drifted: float
    report_path: str | None


class MonitoringRunOut(MonitoringRunSummaryOut):
    """A run with its summary (data quality, drift, performance, coverage) and every figure."""

    summary: dict[str, Any]
    metrics: list[MonitoringMetricOut]


class MonitoringRunsOut(BaseModel):
    runs: list[MonitoringRunSummaryOut]
    count: int


FleetQuery = Annotated[str | None, Query(max_length=200, description="Only this fleet's runs.")]
ModelQuery = Annotated[str | None, Query(max_length=200, description="Only this model's runs.")]
KindQuery = Annotated[RunKind | None, Query(description="live (monitor run) or batch.")]


@router.get("/monitoring/latest", response_model=MonitoringRunOut)
async def latest(
    runtime: RuntimeDep,
    principal: Reader,
    fleet: FleetQuery = None,
    model_name: ModelQuery = None,
    kind: KindQuery = None,
) -> MonitoringRunOut:
    """The newest monitoring run (optionally of one fleet, model or kind) with all its figures;
    404 before the first run."""
    assert runtime.core.db is not None
    db = runtime.core.db
    run = await run_in_threadpool(
        store.latest_run, db, fleet=fleet, model_name=model_name, kind=kind
    )
    if run is None:
        raise NotFoundError("no monitoring run yet: run `prognos monitor run --model NAME`")
    metrics = await run_in_threadpool(store.run_metrics, db, run["id"])
    return MonitoringRunOut.model_validate({**run, "metrics": metrics})


@router.get("/monitoring/runs", response_model=MonitoringRunsOut)
async def runs(
    runtime: RuntimeDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=500, description="Most runs, newest first.")] = 20,
    fleet: FleetQuery = None,
    model_name: ModelQuery = None,
    kind: KindQuery = None,
) -> MonitoringRunsOut:
    """Monitoring runs, newest first, without their figures (``/monitoring/latest`` has them)."""
    assert runtime.core.db is not None
    rows = await run_in_threadpool(
        store.list_runs, runtime.core.db, limit, fleet=fleet, model_name=model_name, kind=kind
    )
    return MonitoringRunsOut(
        runs=[MonitoringRunSummaryOut.model_validate(row) for row in rows], count=len(rows)
    )
