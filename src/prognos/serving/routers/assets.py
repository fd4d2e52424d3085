"""GET /assets (the fleet ranked by risk) and GET /assets/{asset_id}."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from prognos.errors import NotFoundError
from prognos.ingestion.readings import AssetId
from prognos.serving.deps import Reader, RuntimeDep
from prognos.serving.schemas import AssetOut, AssetsOut, AssetStateOut, AssetSummary
from prognos.storage import repository

router = APIRouter(tags=["assets"])


def _summary(row: dict[str, Any]) -> AssetSummary:
    return AssetSummary(
        equipment_id=row["asset_id"],
        failure_probability=row["failure_probability"],
        risk_level=row["risk_level"],
        predicted_rul_cycles=row["rul"],
        should_inspect=row["should_inspect"],
        time=row["time"],
        predicted_at=row["created_at"],
        prediction_id=row["id"],
    )


@router.get("/assets", response_model=AssetsOut)
async def list_assets(
    runtime: RuntimeDep, _: Reader, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> AssetsOut:
    """Every asset's latest prediction, riskiest first (from the prediction log, so every worker
    and replica agrees)."""
    assert runtime.core.db is not None
    rows = await run_in_threadpool(repository.latest_predictions, runtime.core.db, limit)
    return AssetsOut(assets=[_summary(r) for r in rows])


@router.get("/assets/{asset_id}", response_model=AssetOut)
async def get_asset(
    asset_id: AssetId,
    runtime: RuntimeDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> AssetOut:
    """One asset's online state and its prediction history, newest first."""
    assert runtime.core.db is not None
    state = None
    if runtime.core.model is not None and runtime.core.batcher is not None:
        # The state lives with the model (possibly in the compute process): ask there.
        [outcome] = await runtime.core.batcher.submit("state", [asset_id])
        if outcome.error is not None:  # the state store is away (503)
            raise outcome.error
        if outcome.state is not None:
            state = AssetStateOut(
                readings_seen=outcome.state.readings_seen,
                last_time=outcome.state.last_time,
                regime=outcome.state.regime,
            )
    rows = await run_in_threadpool(
        repository.predictions_for_asset, runtime.core.db, asset_id, limit
    )
    if state is None and not rows:
        raise NotFoundError(f"no readings or predictions for asset {asset_id!r}")
    return AssetOut(equipment_id=asset_id, state=state, predictions=[_summary(r) for r in rows])
