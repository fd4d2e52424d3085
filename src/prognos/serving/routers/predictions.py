"""POST /predict, POST /batch-predict and GET /explain/{prediction_id}."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from prognos.errors import NotFoundError, PrognosError
from prognos.ingestion.batching import raise_unavailable
from prognos.ingestion.readings import ReadingIn, check_channels
from prognos.ingestion.scoring import Outcome
from prognos.serving.deps import Forecast, Reader, RuntimeDep, authenticate
from prognos.serving.errors import status_for
from prognos.serving.routers.common import (
    FastJSONResponse,
    check_batch_size,
    prediction_payload,
    require_model,
)
from prognos.serving.runtime import Runtime
from prognos.serving.schemas import (
    BatchError,
    BatchPredictIn,
    BatchPredictOut,
    ExplainOut,
    PredictionOut,
)
from prognos.storage import repository

router = APIRouter(tags=["predictions"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown API key"},
    409: {"description": "The reading is older than the asset's latest"},
    422: {"description": "Invalid reading (names the field and the problem)"},
    429: {"description": "Rate limit exceeded; see Retry-After"},
    503: {"description": "No model loaded, or the online state store is unreachable"},
}


def _raise(outcome: Outcome) -> None:
    if outcome.error is not None:
        raise outcome.error


async def predict(body: ReadingIn, runtime: Forecast) -> FastJSONResponse:
    """Ingest one reading and answer with the asset's failure risk, RUL and why.

    The reading updates the asset's online state (a repeat of the latest (asset, time) is
    idempotent and scores the asset as it stands). ``should_inspect`` is the cost-optimal alert.
    """
    return await _predict(body, runtime)


async def _predict(body: ReadingIn, runtime: Runtime) -> FastJSONResponse:
    model = require_model(runtime)
    check_channels(body, model)
    assert runtime.core.batcher is not None
    # Logged on the compute thread with the reading (see Batcher.submit's ``log``).
    [outcome] = await runtime.core.batcher.submit("predict", [body.as_reading()], log=True)
    _raise(outcome)
    assert outcome.prediction is not None and outcome.latency_ms is not None
    await runtime.core.acknowledge()  # the reading and the prediction are durable before the 200
    return FastJSONResponse(
        prediction_payload(
            outcome.prediction, model, outcome.latency_ms, runtime.settings.top_features
        )
    )


class _PredictRoute(APIRoute):
    """``POST /predict``: a JSON body that is a valid reading goes straight to the endpoint.

    FastAPI's request handler (the body decoded, then every dependency resolved anew) took about
    a third of the event loop's time per ``/predict`` under load. Here a body with a JSON content
    type is decoded and validated in one pass (``model_validate_json``), the key checked as the
    ``Forecast`` dependency does and the endpoint's work called. Anything else, a body that does
    not validate or another content type, takes FastAPI's own handler, so bad input gets the
    same answer as before (``tests/serving`` checks both paths). OpenAPI is unchanged.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()

        async def handler(request: Request) -> Response:
            if not _is_json(request.headers.get("content-type")):
                return await standard(request)
            raw = await request.body()  # kept on the request for the standard handler
            try:
                body = ReadingIn.model_validate_json(raw)
            except ValueError:  # pydantic's ValidationError: FastAPI's handler says why
                return await standard(request)
            runtime: Runtime = request.app.state.runtime
            await authenticate(runtime, request.headers.get("x-api-key"), "predict")
            return await _predict(body, runtime)

        return handler


def _is_json(content_type: str | None) -> bool:
    """``application/json`` (parameters aside), the type every client sends; FastAPI's handler
    takes the other JSON types (``application/*+json``) as it always did."""
    return content_type is not None and (
        content_type == "application/json"
        or content_type.partition(";")[0].strip().lower() == "application/json"
    )


router.add_api_route(
    "/predict",
    predict,
    methods=["POST"],
    response_model=PredictionOut,
    responses=_ERRORS,
    route_class_override=_PredictRoute,
)


@router.post("/batch-predict", response_model=BatchPredictOut, responses=_ERRORS)
async def batch_predict(body: BatchPredictIn, runtime: Forecast) -> FastJSONResponse:
    """Score many assets in one call: stored assets by id, or new readings (ingested first).

    Items fail one by one (unknown asset, bad reading) and are listed under ``errors``; the
    others are scored.
    """
    start = time.perf_counter()
    model = require_model(runtime)
    items: list[Any]
    check_batch_size(runtime, len(body.equipment_ids or body.readings or []))
    assert runtime.core.batcher is not None
    errors: list[BatchError] = []
    if body.equipment_ids is not None:
        ids = list(body.equipment_ids)
        outcomes = await runtime.core.batcher.submit("current", ids, explain=body.explain, log=True)
        raise_unavailable(outcomes)
    else:
        readings = body.readings or []
        ids, items = [], []
        for reading in readings:
            try:
                check_channels(reading, model)
            except PrognosError as exc:
                errors.append(BatchError(equipment_id=reading.equipment_id,
                                         status=status_for(exc), message=str(exc)))  # fmt: skip
                continue
            ids.append(reading.equipment_id)
            items.append(reading)
        outcomes = await runtime.core.batcher.submit(
            "predict", [r.as_reading() for r in items], explain=body.explain, log=True
        )
        raise_unavailable(outcomes)
    predictions = []
    for asset, outcome in zip(ids, outcomes, strict=True):
        if outcome.error is not None:
            errors.append(BatchError(equipment_id=asset, status=status_for(outcome.error),
                                     message=str(outcome.error)))  # fmt: skip
            continue
        assert outcome.prediction is not None and outcome.latency_ms is not None
        predictions.append(
            prediction_payload(
                outcome.prediction, model, outcome.latency_ms, runtime.settings.top_features
            )
        )
    await runtime.core.acknowledge()
    return FastJSONResponse(
        {
            "predictions": predictions,
            "errors": [e.model_dump() for e in errors],
            "total_count": len(predictions),
            "high_risk_count": sum(p["prediction"]["risk_level"] == "HIGH" for p in predictions),
            "processing_time_ms": (time.perf_counter() - start) * 1000.0,
        }
    )


@router.get("/explain/{prediction_id}", response_model=ExplainOut, responses=_ERRORS)
async def explain(prediction_id: str, runtime: RuntimeDep, _: Reader) -> ExplainOut:
    """The full logged explanation of a prediction: the largest contributions per input channel,
    the rest summed as ``other``, and the base value; they add up to the served log-odds."""
    assert runtime.core.writer is not None and runtime.core.db is not None
    row = runtime.core.writer.pending_prediction(prediction_id)
    if row is None:
        row = await run_in_threadpool(repository.get_prediction, runtime.core.db, prediction_id)
    if row is None:
        raise NotFoundError(f"no prediction {prediction_id!r}")
    return ExplainOut(
        prediction_id=row["id"],
        equipment_id=row["asset_id"],
        time=row["time"],
        failure_probability=row["failure_probability"],
        model_name=row["model_name"],
        model_version=row["model_version"],
        explanation=row["explanation"],
    )
