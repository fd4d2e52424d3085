"""POST /feedback: what really happened, linked to the prediction it judges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, status
from starlette.concurrency import run_in_threadpool

from prognos.errors import ConfigError, NotFoundError
from prognos.features.online import time_key
from prognos.ingestion.readings import is_timestamp_time
from prognos.serving.deps import Ingester, RuntimeDep
from prognos.serving.errors import FieldConflictError
from prognos.serving.schemas import (
    ActualOutcome,
    FeedbackIn,
    FeedbackOut,
    PredictionAccuracy,
)
from prognos.storage import repository

router = APIRouter(tags=["feedback"])


@router.post("/feedback", response_model=FeedbackOut, status_code=status.HTTP_201_CREATED)
async def feedback(body: FeedbackIn, runtime: RuntimeDep, principal: Ingester) -> FeedbackOut:
    """Record an operator's outcome for a prediction (or for an asset).

    Stored with the prediction's id, it becomes a label for monitoring and retraining
    (``prognos.storage.repository.feedback_labels``). With ``failure_cycle`` the response says
    how far the predicted RUL was from the actual one.
    """
    assert runtime.core.writer is not None and runtime.core.db is not None
    prediction = None
    if body.prediction_id is not None:
        prediction = runtime.core.writer.pending_prediction(body.prediction_id)
        if prediction is None:
            prediction = await run_in_threadpool(
                repository.get_prediction, runtime.core.db, body.prediction_id
            )
        if prediction is None:
            raise NotFoundError(f"no prediction {body.prediction_id!r}")
        if prediction["asset_id"] != body.equipment_id:
            raise ConfigError(
                f"prediction {body.prediction_id} is for {prediction['asset_id']!r}, "
                f"not {body.equipment_id!r}"
            )
    outcome = body.actual_outcome
    if prediction is not None:
        _check_after(outcome, prediction)
    feedback_id = f"fb_{uuid.uuid4().hex}"
    runtime.core.writer.submit(
        "feedback",
        {
            "id": feedback_id,
            "prediction_id": body.prediction_id,
            "fleet": runtime.core.fleet,
            "asset_id": body.equipment_id,
            "failure_occurred": outcome.failure_occurred,
            "failure_time": outcome.failure_timestamp,
            "failure_cycle": outcome.failure_cycle,
            "failure_type": outcome.failure_type,
            "notes": outcome.inspection_notes,
            "created_at": datetime.now(UTC),
            "submitted_by": principal.name,
            "event": outcome.event,
        },
    )
    await runtime.core.acknowledge()  # the feedback is durable before the 201
    accuracy = None
    if (
        prediction is not None
        and outcome.failure_occurred
        and outcome.failure_cycle is not None
        and not is_timestamp_time(prediction["time"])
    ):
        actual = float(outcome.failure_cycle - prediction["time"])
        accuracy = PredictionAccuracy(
            predicted_rul_cycles=prediction["rul"],
            actual_rul_cycles=actual,
            error_cycles=prediction["rul"] - actual,
        )
    return FeedbackOut(feedback_id=feedback_id, status="recorded", prediction_accuracy=accuracy)


def _check_after(outcome: ActualOutcome, prediction: dict[str, Any]) -> None:
    """A failure before the reading a prediction was made on contradicts it (the asset could
    not have sent that reading). Compared in the prediction's own time: its cycle, or its
    timestamp; the other kind of failure time cannot be compared and is stored as given."""
    time = int(prediction["time"])
    if is_timestamp_time(time):
        if outcome.failure_timestamp is not None and time_key(outcome.failure_timestamp) < time:
            raise FieldConflictError(
                "actual_outcome.failure_timestamp",
                f"{outcome.failure_timestamp.isoformat()} is before the reading "
                f"{datetime.fromtimestamp(time / 1e9, UTC).isoformat()} that prediction "
                f"{prediction['id']} was made on",
            )
    elif outcome.failure_cycle is not None and outcome.failure_cycle < time:
        raise FieldConflictError(
            "actual_outcome.failure_cycle",
            f"{outcome.failure_cycle} is before cycle {time} that prediction "
            f"{prediction['id']} was made on",
        )
