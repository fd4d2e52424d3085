"""Request and response bodies of the HTTP API (separate classes: what comes in is not what goes
out), with the examples the OpenAPI page shows."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_EXAMPLE_SENSORS: dict[str, Any] = {f"sensor_{i}": v for i, v in enumerate(
    [518.67, 642.83, 1589.7, 1400.6, 14.62, 21.61, 554.36, 2388.06, 9046.19, 1.3, 47.47,
     521.66, 2388.02, 8138.62, 8.4195, 0.03, 392.0, 2388.0, 100.0, 39.06, 23.419],
    start=1,
)}  # fmt: skip
_EXAMPLE_SETTINGS: dict[str, Any] = {"setting_1": -0.0007, "setting_2": -0.0004, "setting_3": 100.0}

AssetId = str


def _finite(values: dict[str, float], what: str) -> dict[str, float]:
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{what} must be finite numbers; not {bad}")
    return values


class ReadingIn(BaseModel):
    """One reading of one asset: the reference request shape. Give ``cycle`` or ``timestamp``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "equipment_id": "engine_042",
                    "cycle": 1,
                    "sensor_readings": _EXAMPLE_SENSORS,
                    "operational_settings": _EXAMPLE_SETTINGS,
                }
            ]
        },
    )

    equipment_id: AssetId = Field(min_length=1, max_length=128)
    sensor_readings: dict[str, float] = Field(max_length=512)
    operational_settings: dict[str, float] = Field(default_factory=dict, max_length=64)
    timestamp: datetime | None = None
    cycle: int | None = Field(default=None, ge=0)

    @field_validator("sensor_readings")
    @classmethod
    def _sensors_finite(cls, v: dict[str, float]) -> dict[str, float]:
        return _finite(v, "sensor_readings")

    @field_validator("operational_settings")
    @classmethod
    def _settings_finite(cls, v: dict[str, float]) -> dict[str, float]:
        return _finite(v, "operational_settings")

    @model_validator(mode="after")
    def _one_time(self) -> ReadingIn:
        if (self.timestamp is None) == (self.cycle is None):
            raise ValueError("give exactly one of 'cycle' and 'timestamp'")
        if self.timestamp is not None and self.timestamp.tzinfo is None:
            raise ValueError("timestamp needs a time zone (e.g. 2026-02-07T10:00:00Z)")
        return self

    def time(self) -> int | datetime:
        return self.cycle if self.cycle is not None else self.timestamp  # type: ignore[return-value]

    def as_reading(self) -> dict[str, Any]:
        """The flat reading the feature pipeline takes."""
        return {
            "asset_id": self.equipment_id,
            "time": self.time(),
            **self.operational_settings,
            **self.sensor_readings,
        }


class ReadingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    readings: list[ReadingIn] = Field(min_length=1, max_length=10_000)


class ReadingOutcome(BaseModel):
    index: int
    equipment_id: str
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    message: str | None = None


class ReadingsOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[ReadingOutcome]


class FeatureContribution(BaseModel):
    feature: str
    value: float
    contribution: float = Field(description="SHAP value, log-odds of the explained member.")
    impact: Literal["increases_risk", "decreases_risk"]


class ExplanationOut(BaseModel):
    model: str = Field(description="The member explained (XGBoost: exact TreeSHAP).")
    model_weight: float = Field(
        ge=0.0,
        le=1.0,
        description="That member's weight in the ensemble's failure probability: how much of "
        "the risk the explanation speaks for.",
    )
    top_features: list[FeatureContribution]
    explain_url: str


class RulInterval(BaseModel):
    lower: float
    upper: float
    coverage: float


class PredictionBody(BaseModel):
    failure_probability: float
    risk_level: Literal["LOW", "MEDIUM", "HIGH"]
    predicted_rul_cycles: float
    rul_interval: RulInterval
    should_inspect: bool = Field(description="At or above the cost-optimal alert threshold.")
    alert_threshold: float
    horizon_cycles: int


class PredictionOut(BaseModel):
    prediction_id: str
    equipment_id: str
    time: int = Field(description="Cycle, or nanoseconds since the epoch for timestamps.")
    prediction: PredictionBody
    explanation: ExplanationOut | None
    model_name: str
    model_version: str
    timestamp: datetime
    latency_ms: float


class BatchPredictIn(BaseModel):
    """Either stored assets by id (their latest state) or new readings to ingest and score."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"equipment_ids": ["engine_001", "engine_002"]}]},
    )

    equipment_ids: list[AssetId] | None = Field(default=None, min_length=1)
    readings: list[ReadingIn] | None = Field(default=None, min_length=1)
    explain: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> BatchPredictIn:
        if (self.equipment_ids is None) == (self.readings is None):
            raise ValueError("give exactly one of 'equipment_ids' and 'readings'")
        return self


class BatchError(BaseModel):
    equipment_id: str
    status: int
    message: str


class BatchPredictOut(BaseModel):
    predictions: list[PredictionOut]
    errors: list[BatchError]
    total_count: int
    high_risk_count: int
    processing_time_ms: float


class ActualOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failure_occurred: bool
    failure_timestamp: datetime | None = None
    failure_cycle: int | None = Field(default=None, ge=0)
    failure_type: str | None = Field(default=None, max_length=200)
    inspection_notes: str | None = Field(default=None, max_length=5000)


class FeedbackIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "equipment_id": "engine_042",
                    "prediction_id": "pred_0123456789abcdef0123456789abcdef",
                    "actual_outcome": {
                        "failure_occurred": True,
                        "failure_cycle": 200,
                        "failure_type": "compressor_blade_break",
                        "inspection_notes": "Visible crack on blade 7",
                    },
                }
            ]
        },
    )

    equipment_id: AssetId = Field(min_length=1, max_length=128)
    prediction_id: str | None = Field(default=None, max_length=64)
    actual_outcome: ActualOutcome


class PredictionAccuracy(BaseModel):
    predicted_rul_cycles: float
    actual_rul_cycles: float
    error_cycles: float


class FeedbackOut(BaseModel):
    feedback_id: str
    status: Literal["recorded"]
    prediction_accuracy: PredictionAccuracy | None


class ExplainOut(BaseModel):
    prediction_id: str
    equipment_id: str
    time: int
    failure_probability: float
    model_name: str
    model_version: str
    explanation: dict[str, Any] | None = Field(
        description="base + contributions + other = logit of the explained member"
    )


class AssetSummary(BaseModel):
    equipment_id: str
    failure_probability: float
    risk_level: str
    predicted_rul_cycles: float
    should_inspect: bool
    time: int
    predicted_at: datetime
    prediction_id: str


class AssetsOut(BaseModel):
    assets: list[AssetSummary]


class AssetStateOut(BaseModel):
    readings_seen: int
    last_time: int
    regime: int


class AssetOut(BaseModel):
    equipment_id: str
    state: AssetStateOut | None
    predictions: list[AssetSummary]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    model_loaded: bool
    model_name: str | None
    model_version: str | None
    uptime_seconds: float
    services: dict[str, str]
    detail: dict[str, Any] = Field(default_factory=dict)
