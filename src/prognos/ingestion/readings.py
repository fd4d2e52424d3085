"""One reading as it comes in, by HTTP (``POST /readings``) or as one stream message: the one
definition both edges validate with, so a payload gets the same verdict on either path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from prognos.errors import UnknownChannelError
from prognos.ingestion.scoring import ServedModel

_EXAMPLE_SENSORS: dict[str, Any] = {f"sensor_{i}": v for i, v in enumerate(
    [518.67, 642.83, 1589.7, 1400.6, 14.62, 21.61, 554.36, 2388.06, 9046.19, 1.3, 47.47,
     521.66, 2388.02, 8138.62, 8.4195, 0.03, 392.0, 2388.0, 100.0, 39.06, 23.419],
    start=1,
)}  # fmt: skip
_EXAMPLE_SETTINGS: dict[str, Any] = {"setting_1": -0.0007, "setting_2": -0.0004, "setting_3": 100.0}

# ------------------------------------------------------------------------- what storage holds
# Every value that comes in is bounded here to what the database and the features hold, so a
# reading storage would refuse is refused (HTTP 422, a dead letter) before anything is
# acknowledged.

# Cycles are stored as BIGINT, but the features compute in float64, which holds every integer
# exactly only up to 2**53: past it two cycles could become one.
MAX_CYCLE = 2**53
# Timestamps become int64 nanoseconds since the epoch (pandas' range ends in April 2262). From 1971
# on those nanoseconds (>= 3.15e16) lie above every cycle (<= 2**53 ~ 9.0e15), so a stored time
# says by itself which of the two it is (``is_timestamp_time``).
EARLIEST_TIMESTAMP = datetime(1971, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2200, 1, 1, tzinfo=UTC)

# Ids travel in URL paths (``GET /assets/{id}``), MQTT topics, logs and metrics: letters, digits
# and ``._:-``, starting with a letter or digit, so every id that is accepted can be read back.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
ID_RULE = "ids are letters, digits, '.', '_', ':' and '-', and start with a letter or digit"


def is_timestamp_time(time: int) -> bool:
    """Whether a stored time (cycle, or nanoseconds since the epoch) is a timestamp."""
    return time > MAX_CYCLE


def storable_text(value: str) -> str:
    """``value`` if PostgreSQL can store it: no NUL, and valid Unicode (no lone surrogate from a
    JSON ``"\\ud800"``)."""
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


# The one definition of an asset id, for bodies, topics and the path of GET /assets/{id} alike.
AssetId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)]
ChannelName = Annotated[str, AfterValidator(storable_text)]
Value = Annotated[float, Field(allow_inf_nan=False)]
Cycle = Annotated[int, Field(ge=0, le=MAX_CYCLE)]
Timestamp = Annotated[datetime, AfterValidator(_storable_time)]


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


def check_channels(reading: ReadingIn, model: ServedModel) -> None:
    """Unknown names are refused by name: a typo must not pass as a missing optional sensor."""
    unknown = sorted(reading.sensor_readings.keys() - model.known_sensors) + sorted(
        reading.operational_settings.keys() - model.known_settings
    )
    if unknown:
        raise UnknownChannelError(
            f"{reading.equipment_id}: unknown channels {unknown} for fleet {model.fleet_name!r} "
            f"(sensors {list(model.sensor_names[:3])}..., settings {list(model.setting_names)})"
        )
