"""Request and response bodies of the HTTP API (separate classes: what comes in is not what goes
out), with the examples the OpenAPI page shows."""

from __future__ import annotations

from datetime import datetime
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

from prognos.ingestion.readings import (
    ID_PATTERN,
    AssetId,
    Cycle,
    ReadingIn,
    Timestamp,
    storable_text,
)
from prognos.storage.models import RESET_EVENTS, FeedbackEvent

# The reading itself is ingestion's (one definition for HTTP and the stream).
PredictionId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
FailureType = Annotated[str, StringConstraints(max_length=200), AfterValidator(storable_text)]
Notes = Annotated[str, StringConstraints(max_length=5000), AfterValidator(storable_text)]


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
    feature: str = Field(
        description="An input channel (a sensor or health_index: every feature computed from it), "
        "a feature of no channel (age, regime), or a member explained as one term."
    )
    value: float | None = Field(
        description="The channel's latest normalised value (the feature's own for age, regime)."
    )
    contribution: float = Field(description="Its share of the served log-odds.")
    impact: Literal["increases_risk", "decreases_risk"]
    members: dict[str, float] = Field(
        description="The contribution split by ensemble member (each member's slope included)."
    )


class ExplanationOut(BaseModel):
    output: Literal["log_odds of the served failure probability"] = Field(
        description="What is explained: the blended, calibrated failure probability itself, "
        "in log-odds, where the members' evidence adds up."
    )
    base: float = Field(description="The log-odds of a nominal asset (the members' references).")
    logit: float = Field(description="logit(failure_probability) = base + contributions + other.")
    members: dict[str, float] = Field(
        description="Each explained member's slope in the stack: served log-odds = intercept + "
        "sum of slope x member log-odds."
    )
    top_features: list[FeatureContribution]
    other: float = Field(description="The sum of the contributions not listed.")
    explain_url: str


class RulInterval(BaseModel):
    """The RUL interval at ``coverage`` of the true remaining life.

    ``upper`` is null and ``open_above`` true when the interval reaches the RUL cap the model was
    trained to: it cannot tell how far beyond, so the honest statement is "more than ``lower``".
    """

    lower: float
    upper: float | None
    open_above: bool
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
    """What happened. ``event`` also reports maintenance (by default "failure" when
    ``failure_occurred``, else "inspection"): a "repair" or "replacement" starts a new life of
    the asset; with ``failure_occurred`` it failed and was fixed then. ``failure_cycle`` /
    ``failure_timestamp`` date the event, whatever it is; a repair or replacement needs one."""

    model_config = ConfigDict(extra="forbid")

    failure_occurred: bool
    failure_timestamp: Timestamp | None = None
    failure_cycle: Cycle | None = None
    failure_type: FailureType | None = None
    inspection_notes: Notes | None = None
    event: FeedbackEvent | None = None

    @model_validator(mode="after")
    def _no_failure_without_one(self) -> ActualOutcome:
        if self.event is None:  # as before events: a non-failure report carries no time
            if not self.failure_occurred:
                given = [
                    name
                    for name in ("failure_cycle", "failure_timestamp", "failure_type")
                    if getattr(self, name) is not None
                ]
                if given:
                    raise ValueError(
                        f"failure_occurred is false, yet {', '.join(given)} given (to date a "
                        "repair, replacement or inspection, set event)"
                    )
            self.event = "failure" if self.failure_occurred else "inspection"
            return self
        if self.event == "failure" and not self.failure_occurred:
            raise ValueError("event is failure, yet failure_occurred is false")
        if self.event == "inspection" and self.failure_occurred:
            raise ValueError("event is inspection, yet failure_occurred is true: report a failure")
        if self.failure_type is not None and not self.failure_occurred:
            raise ValueError("failure_occurred is false, yet failure_type given")
        undated = self.failure_cycle is None and self.failure_timestamp is None
        if self.event in RESET_EVENTS and undated:
            raise ValueError(
                f"a {self.event} needs failure_cycle or failure_timestamp: when it happened"
            )
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
        description="As logged: base + contributions + other = logit, the log-odds of the "
        "served failure probability (field 'output'; a row logged before that field explained "
        "the XGBoost member's log-odds alone)."
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


class ShadowOut(BaseModel):
    """The challenger scored in the champion's shadow (``ingestion.shadow``): its figures since
    it started. Its trouble never makes the service degraded."""

    version: str
    state: Literal["starting", "seeding", "ok", "down", "stopped"]
    queued: int = Field(description="Readings and score requests waiting for the shadow.")
    requested: int = Field(description="Champion predictions offered to the shadow.")
    scored: int = Field(description="Shadow predictions logged (shadow = true).")
    missed: int = Field(description="Requests whose reading the shadow's state did not hold.")
    dropped: int = Field(description="Events dropped (queue overflow, state rebuilt, down).")
    rejected: int = Field(description="Readings the challenger refused.")
    seeds: int = Field(description="Times its state was built from the stored readings.")
    failures: int = Field(description="Times its scorer failed (and was started again).")
    compute_mode: str | None
    pid: int | None = Field(description="Its compute process (this process's in thread mode).")
    seconds: float
    error: str | None


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    model_loaded: bool
    model_name: str | None
    model_version: str | None
    uptime_seconds: float
    services: dict[str, str]
    detail: dict[str, Any] = Field(default_factory=dict)
    shadow: ShadowOut | None = None


class KeyRevokedOut(BaseModel):
    """A revoked key (never the key itself)."""

    name: str
    revoked_at: datetime
    refused_within_seconds: float = Field(
        description="This worker refuses the key at once; every other worker within this bound."
    )
