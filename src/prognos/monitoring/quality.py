"""Data quality of the recent window: what arrived, what is missing, implausible or set aside,
and how late it arrived. Computed from stored rows, so it says what the model was actually fed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from prognos.fleet import FleetSpec
from prognos.storage.monitoring import Metric

__all__ = ["QualityResult", "data_quality"]


@dataclass
class QualityResult:
    """Figures of one window. Rates are NaN when there is nothing to rate (no readings)."""

    readings: int
    assets: int
    missing_rate: float
    missing_by_channel: dict[str, float]
    outliers: int
    outliers_by_channel: dict[str, int]
    dead_letters: dict[str, int]
    # Event time to arrival (timestamp fleets only: a cycle says nothing of the wall clock).
    lag_seconds: dict[str, float] = field(default_factory=dict)
    # Run time minus the newest arrival: a silent fleet shows here, whatever its time kind.
    seconds_since_last_reading: float = math.nan

    @property
    def dead_letters_total(self) -> int:
        return sum(self.dead_letters.values())

    def metrics(self) -> list[Metric]:
        out = [
            Metric("data_readings_total", float(self.readings)),
            Metric("data_assets_total", float(self.assets)),
            Metric("data_missing_value_rate", self.missing_rate),
            *(Metric("data_missing_value_rate", v, c) for c, v in self.missing_by_channel.items()),
            Metric("data_outliers_total", float(self.outliers)),
            *(
                Metric("data_outliers_total", float(v), c)
                for c, v in self.outliers_by_channel.items()
            ),
            Metric("data_dead_letters_total", float(self.dead_letters_total)),
            *(Metric("data_dead_letters_total", float(v), r) for r, v in self.dead_letters.items()),
            *(Metric("data_ingestion_lag_seconds", v, s) for s, v in self.lag_seconds.items()),
            Metric("data_seconds_since_last_reading", self.seconds_since_last_reading),
        ]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "readings": self.readings,
            "assets": self.assets,
            "missing_rate": self.missing_rate,
            "missing_by_channel": self.missing_by_channel,
            "outliers": self.outliers,
            "outliers_by_channel": self.outliers_by_channel,
            "dead_letters": self.dead_letters,
            "dead_letters_total": self.dead_letters_total,
            "lag_seconds": self.lag_seconds,
            "seconds_since_last_reading": self.seconds_since_last_reading,
        }


def data_quality(
    readings: pd.DataFrame,
    spec: FleetSpec,
    dead_letters: dict[str, int],
    now: datetime,
) -> QualityResult:
    """Quality of ``readings`` (``asset_id``, ``time``, ``received_at``, channel columns) against
    the fleet's channels and plausible ranges.

    - missing: a channel of the spec that a reading lacks or holds null for; the overall rate is
      over every (reading, channel) cell;
    - outliers: values outside the channel's ``min``/``max`` (channels without bounds have none);
    - dead letters: messages the stream ingester quarantined in the window, by reason;
    - lag: ``received_at - time`` (p50, p95, max) for timestamp fleets.
    """
    channels = [*spec.setting_names, *spec.sensor_names]
    n = len(readings)
    cells = (
        readings.reindex(columns=channels).to_numpy(dtype="float64")
        if n
        else np.empty((0, len(channels)))
    )
    missing = np.isnan(cells)
    missing_by_channel = {
        c: float(missing[:, i].mean()) if n else math.nan for i, c in enumerate(channels)
    }
    outliers_by_channel: dict[str, int] = {}
    for i, name in enumerate(channels):
        bounds = spec.channel(name)
        values = cells[:, i]
        low = values < bounds.min if bounds.min is not None else np.zeros(n, bool)
        high = values > bounds.max if bounds.max is not None else np.zeros(n, bool)
        outliers_by_channel[name] = int(np.count_nonzero(low | high))
    return QualityResult(
        readings=n,
        assets=int(readings["asset_id"].nunique()) if n else 0,
        missing_rate=float(missing.mean()) if missing.size else math.nan,
        missing_by_channel=missing_by_channel,
        outliers=sum(outliers_by_channel.values()),
        outliers_by_channel=outliers_by_channel,
        dead_letters=dict(sorted(dead_letters.items())),
        lag_seconds=_lag(readings) if spec.time_kind == "timestamp" and n else {},
        seconds_since_last_reading=(
            (pd.Timestamp(now) - readings["received_at"].max()).total_seconds() if n else math.nan
        ),
    )


def _lag(readings: pd.DataFrame) -> dict[str, float]:
    event = pd.to_datetime(readings["time"].astype("int64"), utc=True)  # ns since the epoch
    lag = (readings["received_at"] - event).dt.total_seconds().to_numpy(dtype="float64")
    return {
        "p50": float(np.quantile(lag, 0.5)),
        "p95": float(np.quantile(lag, 0.95)),
        "max": float(lag.max()),
    }
