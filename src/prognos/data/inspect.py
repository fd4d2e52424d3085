"""A first look at a fleet: size, coverage, dead channels, gaps and operating regimes.

Works on data as loaded (before validation), so it tolerates dirty cells: numbers are taken with
``pd.to_numeric(errors="coerce")`` and cells present but not numeric are counted separately.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import pandas as pd
from pandas.api.types import is_datetime64_any_dtype
from pydantic import BaseModel, ConfigDict

from prognos.data.dataset import FleetData
from prognos.data.regimes import RegimeModel, find_regimes
from prognos.fleet import ASSET, TIME

__all__ = ["InspectReport", "find_regimes", "inspect_fleet"]


class CycleStats(BaseModel):
    """Readings per asset."""

    min: int
    median: float
    mean: float
    max: int


class TimeSpan(BaseModel):
    """First and last reading time; ``duration`` in cycles, or hours for timestamps."""

    start: float | datetime | None
    end: float | datetime | None
    duration: float | None


class Regime(BaseModel):
    """One operating regime: its centre in original setting units and how many rows it holds."""

    center: dict[str, float]
    rows: int


class InspectReport(BaseModel):
    """What ``prognos inspect`` prints; JSON-serialisable."""

    model_config = ConfigDict(extra="forbid")

    source: str
    n_rows: int
    n_assets: int
    cycles_per_asset: CycleStats
    time_span: TimeSpan
    settings: list[str]
    sensors: list[str]
    constant_columns: list[str]
    missing_values: dict[str, int]
    non_numeric_values: dict[str, int]
    n_regimes: int
    regimes: list[Regime]
    shape: Literal["run_to_failure", "event_log", "telemetry"]
    events: dict[str, int] | None = None


def inspect_fleet(data: FleetData) -> InspectReport:
    """Summarise a fleet; regimes come from :class:`RegimeModel` on the settings."""
    readings, spec = data.readings, data.spec
    channels = [c for c in (*spec.setting_names, *spec.sensor_names) if c in readings.columns]
    numeric = {c: pd.to_numeric(readings[c], errors="coerce") for c in channels}

    per_asset = readings.groupby(ASSET, sort=False).size()
    cycles = CycleStats(
        min=int(per_asset.min()) if len(per_asset) else 0,
        median=float(per_asset.median()) if len(per_asset) else 0.0,
        mean=float(per_asset.mean()) if len(per_asset) else 0.0,
        max=int(per_asset.max()) if len(per_asset) else 0,
    )
    missing = {str(c): int(n) for c, n in readings.isna().sum().items() if n}
    non_numeric = {
        c: int(n) for c in channels if (n := int((numeric[c].isna() & readings[c].notna()).sum()))
    }
    constant = [c for c in channels if readings[c].nunique(dropna=True) <= 1]

    settings = [c for c in spec.setting_names if c in readings.columns]
    regimes = _regimes(pd.DataFrame({c: numeric[c] for c in settings}, index=readings.index))

    if data.events is not None:
        shape: Literal["run_to_failure", "event_log", "telemetry"] = "event_log"
        events = {str(k): int(v) for k, v in data.events["event"].value_counts().items()}
    else:
        shape = "run_to_failure" if data.run_to_failure else "telemetry"
        events = None
    return InspectReport(
        source=data.source,
        n_rows=len(readings),
        n_assets=int(readings[ASSET].nunique()),
        cycles_per_asset=cycles,
        time_span=_time_span(readings[TIME]),
        settings=list(spec.setting_names),
        sensors=list(spec.sensor_names),
        constant_columns=constant,
        missing_values=missing,
        non_numeric_values=non_numeric,
        n_regimes=len(regimes),
        regimes=regimes,
        shape=shape,
        events=events,
    )


def _regimes(settings: pd.DataFrame) -> list[Regime]:
    """Regimes with centres in original units, largest first."""
    complete = settings.dropna()
    values = complete.to_numpy(dtype="float64")
    model = RegimeModel.fit(values) if settings.shape[1] else RegimeModel.single()
    if model.n_regimes == 1:
        center = {c: float(complete[c].mean()) for c in settings.columns if len(complete)}
        return [Regime(center=center, rows=len(settings))]
    groups = complete.groupby(model.assign(values))
    centers, sizes = groups.mean(), groups.size()
    regimes = [
        Regime(center={c: float(centers.loc[i, c]) for c in settings.columns}, rows=int(sizes[i]))
        for i in centers.index
    ]
    return sorted(regimes, key=lambda r: (-r.rows, tuple(r.center.values())))


def _time_span(time: pd.Series) -> TimeSpan:
    if is_datetime64_any_dtype(time):
        present = time.dropna()
        if present.empty:
            return TimeSpan(start=None, end=None, duration=None)
        start, end = present.min(), present.max()
        return TimeSpan(
            start=start.to_pydatetime(),
            end=end.to_pydatetime(),
            duration=float((end - start) / pd.Timedelta(hours=1)),
        )
    numbers = pd.to_numeric(time, errors="coerce").dropna()
    if numbers.empty:
        return TimeSpan(start=None, end=None, duration=None)
    lo, hi = float(numbers.min()), float(numbers.max())
    return TimeSpan(start=lo, end=hi, duration=hi - lo)
