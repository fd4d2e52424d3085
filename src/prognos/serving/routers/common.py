"""Shared by the routers: turning readings and predictions into API shapes and log rows."""

from __future__ import annotations

import math
from typing import Any

import orjson
from fastapi.responses import JSONResponse

from prognos.errors import ConfigError
from prognos.ingestion.predictor import Prediction
from prognos.ingestion.scoring import NoModelError, ServedModel
from prognos.serving.runtime import Runtime


def require_model(runtime: Runtime) -> ServedModel:
    """The model being served, or 503: readings and predictions need its feature pipeline."""
    if runtime.core.model is None:
        raise NoModelError("no model is loaded yet; see /health")
    return runtime.core.model


def check_batch_size(runtime: Runtime, items: int) -> None:
    limit = runtime.settings.max_batch
    if items > limit:
        raise ConfigError(f"{items} items exceed the batch limit of {limit}")


def prediction_payload(
    p: Prediction, model: ServedModel, latency_ms: float, top_k: int
) -> dict[str, Any]:
    """A :class:`PredictionOut` as plain JSON types, built directly.

    The hot endpoints return these through :class:`FastJSONResponse` instead of a pydantic model
    that FastAPI would validate and serialise again: half of the per-item HTTP cost of a
    100-asset batch. ``tests/serving`` validates the shape against ``PredictionOut``.
    """
    explanation = None
    if p.explanation is not None:
        e = p.explanation
        top = e.top(top_k)
        explanation = {
            "output": e.output,
            "base": e.base,
            "logit": e.logit,
            "members": e.members,
            "top_features": [
                {
                    "feature": c.feature,
                    "value": c.value if math.isfinite(c.value) else None,
                    "contribution": c.contribution,
                    "impact": "increases_risk" if c.contribution > 0 else "decreases_risk",
                    "members": c.members,
                }
                for c in top
            ],
            # The logged contributions past top_k, and the logged "other".
            "other": e.other + sum(c.contribution for c in e.contributions[len(top) :]),
            "explain_url": f"/explain/{p.prediction_id}",
        }
    return {
        "prediction_id": p.prediction_id,
        "equipment_id": p.asset_id,
        "time": p.time,
        "prediction": {
            "failure_probability": p.failure_probability,
            "risk_level": p.risk_level,
            "predicted_rul_cycles": p.rul,
            "rul_interval": {
                "lower": p.rul_lower,
                "upper": p.rul_upper,
                "open_above": p.rul_upper is None,
                "coverage": model.coverage,
            },
            "should_inspect": p.should_inspect,
            "alert_threshold": model.threshold,
            "horizon_cycles": model.horizon,
        },
        "explanation": explanation,
        "model_name": p.model_name,
        "model_version": p.model_version,
        "timestamp": p.created_at.isoformat().replace("+00:00", "Z"),
        "latency_ms": latency_ms,
    }


class FastJSONResponse(JSONResponse):
    """Compact JSON written by orjson: the standard encoder formats floats at ~1 µs each on this
    machine, ~0.2 ms of the event loop per explained prediction; orjson ~5 µs. NaN and infinities
    become null (the standard encoder wrote ``NaN``, which is not JSON)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
