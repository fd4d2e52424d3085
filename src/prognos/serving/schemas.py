"""Request and response bodies of the HTTP API (separate classes: what comes in is not what goes
out), with the examples the OpenAPI page shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WrapValidator,
    model_validator,
)

_EXAMPLE_SENSORS: dict[str, Any] = {f"sensor_{i}": v for i, v in enumerate(
    [518.67, 642.83, 1589.7, 1400.6, 14.62, 21.61, 554.36, 2388.06, 9046.19, 1.3, 47.47,
     521.66, 2388.02, 8138.62, 8.4195, 0.03, 392.0, 2388.0, 100.0, 39.06, 23.419],
    start=1,
)}  # fmt: skip
_EXAMPLE_SETTINGS: dict[str, Any] = {"setting_1": -0.0007, "setting_2": -0.0004, "setting_3": 100.0}

# ------------------------------------------------------------------------- what storage holds
# Every value that comes in is bounded here to what the database and the features hold, so a
# request storage would refuse is answered 422 before anything is acknowledged.

# Cycles are stored as BIGINT, but the features compute in float64, which holds every integer
# exactly only up to 2**53: past it two cycles could become one.
MAX_CYCLE = 2**53
# Timestamps become int64 nanoseconds since the epoch (pandas' range ends in April 2262). From 1971
# on those nanoseconds (>= 3.15e16) lie above every cycle (<= 2**53 ~ 9.0e15), so a stored time
# says by itself which of the two it is (``is_timestamp_time``).
EARLIEST_TIMESTAMP = datetime(1971, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2200, 1, 1, tzinfo=UTC)

# Ids travel in URL paths (``GET /assets/{id}``), logs and metrics: letters, digits and ``._:-``,
# starting with a letter or digit, so every id that is accepted can be read back.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
ID_RULE = "ids are letters, digits, '.', '_', ':' and '-', and start with a letter or digit"


def is_timestamp_time(time: int) -> bool:
    """Whether a stored time (cycle, or nanoseconds since the epoch) is a timestamp."""
    return time > MAX_CYCLE


def _storable_text(value: str) -> str:
    # PostgreSQL refuses NUL in text; a lone surrogate (a JSON "\\ud800") is no UTF-8 at all.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (not a lone surrogate)") from None
    return value


def _storable_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2026-02-07T10:00:00Z)")
    if not EARLIEST_TIMESTAMP <= value < LATEST_TIMESTAMP:
        raise ValueError(
            f"must be from {EARLIEST_TIMESTAMP:%Y-%m-%d} up to {LATEST_TIMESTAMP:%Y-%m-%d} (UTC)"
        )
    return value


# The one definition of an asset id, for bodies and the path of GET /assets/{id} alike.
AssetId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)]
PredictionId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
ChannelName = Annotated[str, AfterValidator(_storable_text)]
Value = Annotated[float, Field(allow_inf_nan=False)]
Cycle = Annotated[int, Field(ge=0, le=MAX_CYCLE)]
Timestamp = Annotated[datetime, AfterValidator(_storable_time)]
FailureType = Annotated[str, StringConstraints(max_length=200), AfterValidator(_storable_text)]
Notes = Annotated[str, StringConstraints(max_length=5000), AfterValidator(_storable_text)]


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

    equipment_id: AssetId
    sensor_readings: dict[ChannelName, Value] = Field(max_length=512)
    operational_settings: dict[ChannelName, Value] = Field(default_factory=dict, max_length=64)
    timestamp: Timestamp | None = None
    cycle: Cycle | None = None

    @model_validator(mode="after")
    def _one_time(self) -> ReadingIn:
        if (self.timestamp is None) == (self.cycle is None):
            raise ValueError("give exactly one of 'cycle' and 'timestamp'")
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


def _by_shape(data: Any, _: Any) -> ReadingsIn | ReadingIn:
    """A body with ``readings`` is a batch, any other one reading. Chosen by shape instead of
    trying both (a plain union), whose errors would list both members' complaints under their
    pydantic tags; this way an error names ``readings[3].cycle``."""
    if isinstance(data, dict) and "readings" in data:
        return ReadingsIn.model_validate(data)
    return ReadingIn.model_validate(data)


# The body of POST /readings: one reading or ``{"readings": [...]}``.
ReadingsBody = Annotated[ReadingsIn | ReadingIn, WrapValidator(_by_shape)]


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
    failure_timestamp: Timestamp | None = None
    failure_cycle: Cycle | None = None
    failure_type: FailureType | None = None
    inspection_notes: Notes | None = None

    @model_validator(mode="after")
    def _no_failure_without_one(self) -> ActualOutcome:
        if not self.failure_occurred:
            given = [
                name
                for name in ("failure_cycle", "failure_timestamp", "failure_type")
                if getattr(self, name) is not None
            ]
            if given:
                raise ValueError(f"failure_occurred is false, yet {', '.join(given)} given")
        return self


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

    equipment_id: AssetId
    prediction_id: PredictionId | None = None
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


class KeyRevokedOut(BaseModel):
    """A revoked key (never the key itself)."""

    name: str
    revoked_at: datetime
    refused_within_seconds: float = Field(
        description="This worker refuses the key at once; every other worker within this bound."
    )
