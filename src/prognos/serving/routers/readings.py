"""POST /readings: validate, store and fold readings into each asset's online state."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from prognos.errors import PrognosError
from prognos.ingestion.readings import ReadingIn, check_channels
from prognos.serving.deps import Ingester, RuntimeDep
from prognos.serving.routers.common import check_batch_size, require_model
from prognos.serving.schemas import (
    ReadingOutcome,
    ReadingsBody,
    ReadingsIn,
    ReadingsOut,
)

router = APIRouter(tags=["readings"])


@router.post(
    "/readings",
    response_model=ReadingsOut,
    responses={422: {"description": "Every reading was rejected; each says why"}},
)
async def post_readings(
    body: ReadingsBody, runtime: RuntimeDep, _: Ingester
) -> ReadingsOut | JSONResponse:
    """Accept one reading or ``{"readings": [...]}`` in time order per asset.

    Each reading is judged alone: a repeat of the asset's latest reading with the same values is
    a ``duplicate`` (idempotent, nothing changes); the same time with other values is rejected
    as a ``conflict`` naming both values (the accepted one stands); an older one than the
    asset's latest, a missing or out-of-range value, or a time of the wrong kind is
    ``rejected`` with the reason. Accepted readings are stored (durably, before the answer) and
    update the asset's state; when none was accepted or duplicate the response is 409 if every
    one clashed with what is stored, 422 otherwise.
    """
    model = require_model(runtime)
    readings = body.readings if isinstance(body, ReadingsIn) else [body]
    check_batch_size(runtime, len(readings))
    results: list[ReadingOutcome | None] = [None] * len(readings)
    valid: list[tuple[int, ReadingIn]] = []
    for i, reading in enumerate(readings):
        try:
            check_channels(reading, model)
            valid.append((i, reading))
        except PrognosError as exc:
            results[i] = _rejected(i, reading, exc)
    # The one ingestion path (shared with the stream): accepted readings are durable on return.
    outcomes = await runtime.core.ingest([r.as_reading() for _, r in valid])
    for (i, reading), outcome in zip(valid, outcomes, strict=True):
        if outcome.error is not None:
            results[i] = _rejected(i, reading, outcome.error)
        elif outcome.duplicate:
            results[i] = ReadingOutcome(index=i, equipment_id=reading.equipment_id,
                                        status="duplicate")  # fmt: skip
        else:  # the batcher queued it for the database as the state took it
            results[i] = ReadingOutcome(index=i, equipment_id=reading.equipment_id,
                                        status="accepted")  # fmt: skip
    final = [r for r in results if r is not None]
    out = ReadingsOut(
        accepted=sum(r.status == "accepted" for r in final),
        duplicates=sum(r.status == "duplicate" for r in final),
        rejected=sum(r.status == "rejected" for r in final),
        results=final,
    )
    if out.accepted == 0 and out.duplicates == 0:
        # 409 when every reading clashes with what is stored (older than the latest, or other
        # values at an accepted time); 422 when some reading is invalid in itself.
        clash = all(r.reason in ("out_of_order", "conflict") for r in final)
        return JSONResponse(out.model_dump(mode="json"), status_code=409 if clash else 422)
    return out


def _rejected(index: int, reading: ReadingIn, exc: Exception) -> ReadingOutcome:
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return ReadingOutcome(
        index=index,
        equipment_id=reading.equipment_id,
        status="rejected",
        reason=reason,
        message=str(exc),
    )
