"""Rows to strata: operating condition, condition-normalised channels, health stage, binned tests.

The one place both sides of a drift comparison are computed: the reference profile (at training)
and a monitored batch go through the same arithmetic, so "like with like" is a property of the
code, not of two implementations agreeing.

Per reading, in order:

1. **Operating condition.** Distance to the nearest known regime centre, per setting in units of
   that regime's setting spread (Chebyshev, floored for settings held constant). Readings beyond
   the cutoff are in an unseen condition: counted, then left out of every other test (their
   normalised values would be meaningless).
2. **Channels.** Each kept sensor standardised within its regime exactly as the model's feature
   pipeline does, plus the health index (the pipeline's first principal direction).
3. **Health stage.** The asset's health index smoothed over its last few readings in the batch,
   cut at quantiles of the reference. The stage is a low-capacity function of the readings
   themselves, identical at training and at monitoring time.
4. **Cell** = (regime, stage). Each column's value becomes a residual from its expected value in
   the cell, in the cell's reference standard deviations, then a bin; within-asset first
   differences (the dynamics test: noise, frozen values) are binned the same way. The expected
   value follows two covariates linearly within the cell: the age in cycles (cycle fleets; some
   channels age in ways the health index does not show early in life: C-MAPSS FD001's core
   speed rises through the flat "healthy" stage, and a fleet cut earlier in life would otherwise
   look shifted) and the smoothed health index without the column's own share (where in its
   stage the asset is; without it, a batch of old assets fills each stage with the assets whose
   offsets keep their health index low, and their other channels look shifted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from prognos.data.regimes import RegimeModel
from prognos.errors import SchemaError
from prognos.features.pipeline import HEALTH_INDEX, FeaturePipeline
from prognos.fleet import ASSET, TIME

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]

N_BINS = 12  # bins per test (level: 10 quantile bins + 2 tails; dynamics: zero + 11)
_ZERO = 1e-12


def _arr(values: Any) -> Array:
    return np.asarray(values, dtype=np.float64)


def health_direction(z: Array, age: Array) -> Array:
    """First principal direction of standardised sensors, oriented to rise with age."""
    _, _, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    weights = vt[0]
    return -weights if np.corrcoef(z @ weights, age)[0, 1] < 0 else weights


@dataclass(frozen=True)
class Normaliser:
    """The model pipeline's per-regime standardisation and health index, as plain arrays."""

    settings: list[str]
    sensors: list[str]
    regime_columns: list[int]
    regime_mean: Array
    regime_scale: Array
    regime_centres: Array  # (regimes, len(regime_columns)), standardised
    sensor_mean: Array  # (regimes, sensors)
    sensor_scale: Array
    health_weights: Array  # (sensors,)

    @classmethod
    def from_pipeline(cls, pipeline: FeaturePipeline, readings: pd.DataFrame) -> Normaliser:
        regimes: RegimeModel = pipeline.regimes_
        weights = pipeline.health_weights_
        if weights is None:  # the model has no health index: the stage needs one all the same
            regime = regimes.assign(readings[pipeline.fleet.setting_names].to_numpy(np.float64))
            raw = readings[pipeline.sensors_].to_numpy(np.float64)
            z = (raw - pipeline.sensor_mean_[regime]) / pipeline.sensor_scale_[regime]
            age = readings.groupby(ASSET, sort=False).cumcount().to_numpy(dtype=np.float64)
            weights = health_direction(z, _arr(age))
        return cls(
            settings=list(pipeline.fleet.setting_names),
            sensors=list(pipeline.sensors_),
            regime_columns=[int(c) for c in regimes.columns],
            regime_mean=_arr(regimes.mean),
            regime_scale=_arr(regimes.scale),
            regime_centres=_arr(regimes.centres),
            sensor_mean=_arr(pipeline.sensor_mean_),
            sensor_scale=_arr(pipeline.sensor_scale_),
            health_weights=_arr(weights),
        )

    @property
    def n_regimes(self) -> int:
        return int(self.sensor_mean.shape[0])

    @property
    def channels(self) -> list[str]:
        return [*self.sensors, HEALTH_INDEX]

    def regime(self, settings: Array) -> IntArray:
        if self.n_regimes == 1:
            return np.zeros(len(settings), dtype=np.intp)
        model = RegimeModel(
            columns=np.asarray(self.regime_columns, dtype=np.intp),
            mean=self.regime_mean,
            scale=self.regime_scale,
            centres=self.regime_centres.reshape(self.n_regimes, -1),
        )
        return model.assign(settings)

    def transform(self, settings: Array, sensors: Array) -> tuple[Array, IntArray]:
        """Standardised sensors plus the health index (rows, sensors + 1), and regime ids."""
        regime = self.regime(settings)
        z = (sensors - self.sensor_mean[regime]) / self.sensor_scale[regime]
        health = z @ self.health_weights
        return np.concatenate([z, health[:, None]], axis=1), regime


@dataclass(frozen=True)
class Conditions:
    """Known operating conditions: each regime's setting centre and spread, and the cutoff."""

    centres: Array  # (regimes, settings), raw units
    spread: Array  # (regimes, settings), floored
    cutoff: float  # in spreads; beyond it on any setting of the nearest regime = unseen

    @classmethod
    def fit(cls, settings: Array, regime: IntArray, n_regimes: int) -> Conditions:
        k = settings.shape[1]
        centres, spread = np.zeros((n_regimes, k)), np.ones((n_regimes, k))
        for r in range(n_regimes):
            rows = settings[regime == r]
            if len(rows):
                centres[r] = rows.mean(axis=0)
                spread[r] = rows.std(axis=0)
        # A setting held constant (FD001's throttle angle) has no spread: 0.1% of its level
        # (or of 1 when it sits at zero) is what counts as the same condition.
        floor = 1e-3 * np.maximum(np.abs(centres), 1.0)
        spread = np.maximum(spread, floor)
        conditions = cls(centres=centres, spread=spread, cutoff=np.inf)
        distance, _ = conditions.measure(settings)
        # Well past the reference's own extremes: jitter around a known condition never counts.
        cutoff = max(6.0, 1.5 * float(np.quantile(distance, 0.999))) if len(distance) else 6.0
        return cls(centres=centres, spread=spread, cutoff=cutoff)

    def measure(self, settings: Array) -> tuple[Array, NDArray[np.bool_]]:
        """Distance to the nearest regime (in spreads) and, per setting, whether it is past the
        cutoff of that nearest regime."""
        n, k = settings.shape
        if k == 0 or n == 0:
            return np.zeros(n), np.zeros((n, k), dtype=bool)
        excess = np.abs(settings[:, None, :] - self.centres[None]) / self.spread[None]
        worst = excess.max(axis=2)
        nearest = np.argmin(worst, axis=1)
        distance = worst[np.arange(n), nearest]
        per_setting = excess[np.arange(n), nearest] > self.cutoff
        return distance, per_setting


@dataclass(frozen=True)
class Stages:
    """Health stages: the smoothed health index cut at reference quantiles."""

    smoothing: int  # readings in the trailing mean
    edges: Array  # (stages - 1,)
    life_fraction: list[float]  # mean fraction of life per stage in the reference (description)
    rul: list[float]  # mean true RUL per stage in the reference (description)

    @property
    def n_stages(self) -> int:
        return len(self.edges) + 1

    def assign(self, smoothed: Array) -> IntArray:
        return np.searchsorted(self.edges, smoothed, side="right").astype(np.intp)


@dataclass
class Rows:
    """A batch of readings in canonical order (asset, time), reduced to what the tests need."""

    order: IntArray  # sorted position -> row of the input
    asset: IntArray  # codes, sorted rows
    asset_ids: NDArray[Any]  # original ids, sorted rows
    time: NDArray[Any]
    distance: Array  # to the nearest known condition (all rows)
    outside: NDArray[np.bool_]  # (rows, settings) past the cutoff
    known: NDArray[np.bool_]
    # Below: known rows only.
    regime: IntArray
    values: Array  # (known, columns): channels then features
    smoothed: Array  # smoothed health index
    smooth: Array  # (known, channels) every channel smoothed the same way (NaN: no value)
    age: Array  # the time column as cycles in service (NaN for timestamps)
    position: IntArray  # reading number within the asset in this batch (0-based)
    first: NDArray[np.bool_]  # no earlier known reading of the asset in this batch

    @property
    def n_rows(self) -> int:
        return len(self.asset)

    @property
    def n_assets(self) -> int:
        return len(np.unique(self.asset[self.known]))


def readings_arrays(
    readings: pd.DataFrame, normaliser: Normaliser, features: list[str]
) -> tuple[NDArray[Any], NDArray[Any], Array, Array, Array]:
    """Asset ids, times, settings, kept sensors and feature columns (NaN when absent)."""
    for column in (ASSET, TIME, *normaliser.settings, *normaliser.sensors):
        if column not in readings.columns:
            raise SchemaError(f"readings lack column {column!r} that the reference profile needs")
    feature_block = np.full((len(readings), len(features)), np.nan)
    for j, name in enumerate(features):
        if name in readings.columns:
            feature_block[:, j] = readings[name].to_numpy(dtype=np.float64)
    return (
        readings[ASSET].to_numpy(),
        readings[TIME].to_numpy(),
        readings[normaliser.settings].to_numpy(dtype=np.float64),
        readings[normaliser.sensors].to_numpy(dtype=np.float64),
        feature_block,
    )


def prepare_rows(
    normaliser: Normaliser,
    conditions: Conditions,
    smoothing: int,
    asset_ids: NDArray[Any],
    time: NDArray[Any],
    settings: Array,
    sensors: Array,
    features: Array,
) -> Rows:
    """Sort, check conditions, normalise and smooth the health index (no reference stats yet)."""
    codes, _ = pd.factorize(asset_ids)
    order = np.lexsort((time, codes))
    codes, settings, sensors = codes[order], settings[order], sensors[order]
    distance, outside = conditions.measure(settings)
    known = distance <= conditions.cutoff
    values, regime = normaliser.transform(settings[known], sensors[known])
    values = np.concatenate([values, features[order][known]], axis=1)
    asset = codes[known]
    n = len(asset)
    first = np.r_[True, asset[1:] != asset[:-1]] if n else np.zeros(0, dtype=bool)
    starts = np.flatnonzero(first)
    position = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    # Trailing mean of every channel over the asset's last `smoothing` known readings (those
    # with a value: a reading missing a sensor has no health index either).
    channels = values[:, : len(normaliser.channels)]
    finite = np.isfinite(channels)
    total = np.vstack(
        [np.zeros((1, channels.shape[1])), np.cumsum(np.where(finite, channels, 0), 0)]
    )
    count = np.vstack([np.zeros((1, channels.shape[1])), np.cumsum(finite, axis=0)])
    span = np.minimum(position + 1, smoothing)
    index = np.arange(n)
    counted = count[index + 1] - count[index + 1 - span]
    smooth = (total[index + 1] - total[index + 1 - span]) / np.maximum(counted, 1)
    smooth[counted == 0] = np.nan
    smoothed = smooth[:, len(normaliser.sensors)]
    if not np.isfinite(smoothed).all():  # the asset's nearest smoothed value, else the healthiest
        filled = pd.Series(smoothed).groupby(asset).transform(lambda x: x.ffill().bfill())
        smoothed = filled.fillna(-np.inf).to_numpy(dtype=np.float64)
    age = np.asarray(time)[order][known]
    age = age.astype(np.float64) if np.issubdtype(age.dtype, np.number) else np.full(n, np.nan)
    return Rows(
        order=order,
        asset=codes,
        asset_ids=np.asarray(asset_ids)[order],
        time=np.asarray(time)[order],
        distance=distance,
        outside=outside,
        known=known,
        regime=regime,
        values=values,
        smoothed=smoothed,
        smooth=smooth,
        age=age,
        position=position,
        first=first,
    )


@dataclass(frozen=True)
class Layout:
    """How prepared rows become binned tests: cells, per-cell reference moments, bin edges.

    Tests are the level test of every column, then the dynamics test of the first
    ``n_dynamics`` columns (the channels); both have :data:`N_BINS` bins.
    """

    stages: Stages
    columns: list[str]
    n_dynamics: int
    skip_first: list[int]  # per column: readings of each asset skipped (feature history)
    mean: Array  # (cells, columns)
    std: Array  # (cells, columns)
    level_edges: Array  # (columns, N_BINS - 1)
    dynamics_edges: Array  # (n_dynamics, N_BINS - 2), above the zero bin
    slope: Array  # (cells, columns) change of the expected value per cycle of age
    age_centre: Array  # (cells,) reference mean age
    age_low: Array  # (cells,) ages are clipped to the reference's 1-99% range of the cell
    age_high: Array
    health_slope: Array  # (cells, columns) change per unit of the health covariate
    health_centre: Array  # (cells, columns) reference mean of the health covariate
    loo_weights: Array  # (columns,) the column's own weight in the health index (0: none)

    @property
    def n_tests(self) -> int:
        return len(self.columns) + self.n_dynamics

    @property
    def n_cells(self) -> int:
        return int(self.mean.shape[0])

    def cells(self, rows: Rows) -> IntArray:
        return rows.regime * self.stages.n_stages + self.stages.assign(rows.smoothed)

    def covariates(self, rows: Rows) -> tuple[Array, Array]:
        """Age (NaN for timestamps) and, per column, the smoothed health index without the
        column's own share (``loo_weights``): where within its stage a reading sits, measured
        so that a fault on a channel cannot move its own expected value."""
        n_channels = rows.smooth.shape[1]
        health = rows.smoothed[:, None] - self.loo_weights[None, :n_channels] * rows.smooth
        extra = np.repeat(rows.smoothed[:, None], len(self.columns) - n_channels, axis=1)
        return rows.age, np.concatenate([health, extra], axis=1)

    def expected(self, rows: Rows, cell: IntArray) -> Array:
        """Expected value of every column: the cell's mean, moved along its age trend and its
        health covariate (both clipped to or centred on the cell's reference)."""
        age, health = self.covariates(rows)
        age = np.clip(age, self.age_low[cell], self.age_high[cell]) - self.age_centre[cell]
        age = np.where(np.isfinite(age), age, 0.0)
        health = np.where(np.isfinite(health), health - self.health_centre[cell], 0.0)
        out = self.mean[cell] + self.slope[cell] * age[:, None] + self.health_slope[cell] * health
        return np.asarray(out, dtype=np.float64)

    def residuals(self, rows: Rows, cell: IntArray) -> Array:
        return (rows.values - self.expected(rows, cell)) / self.std[cell]

    def differences(self, rows: Rows) -> Array:
        """|first difference| of each channel within an asset; NaN at each asset's first."""
        values = rows.values[:, : self.n_dynamics]
        diff = np.full_like(values, np.nan)
        if len(values) > 1:
            diff[1:] = np.abs(values[1:] - values[:-1])
            diff[rows.first] = np.nan
        return diff

    def usable(self, rows: Rows, residual: Array) -> NDArray[np.bool_]:
        """Residuals that take part: finite, past each feature's history at the asset's start."""
        skip = np.asarray(self.skip_first, dtype=np.intp)
        return np.isfinite(residual) & (rows.position[:, None] >= skip[None, :])

    def bins(self, rows: Rows, residual: Array) -> IntArray:
        """Bin of every test per known row (rows, tests); -1 where the test has no value."""
        usable = self.usable(rows, residual)
        out = np.full((len(residual), self.n_tests), -1, dtype=np.intp)
        for j in range(len(self.columns)):
            ok = usable[:, j]
            out[ok, j] = np.searchsorted(self.level_edges[j], residual[ok, j], side="right")
        diff = self.differences(rows)
        for j in range(self.n_dynamics):
            value = diff[:, j]
            ok = np.isfinite(value)
            zero = ok & (value <= _ZERO)
            t = len(self.columns) + j
            out[ok, t] = 1 + np.searchsorted(self.dynamics_edges[j], value[ok], side="right")
            out[zero, t] = 0
        return out

    def counts(self, cell: IntArray, bins: IntArray) -> NDArray[np.int64]:
        """Histogram (tests, cells, bins) of binned rows."""
        n_tests, n_cells = self.n_tests, self.n_cells
        test = np.broadcast_to(np.arange(n_tests), bins.shape)
        ok = bins >= 0
        flat = (test[ok] * n_cells + np.broadcast_to(cell[:, None], bins.shape)[ok]) * N_BINS
        flat = flat + bins[ok]
        counts = np.bincount(flat, minlength=n_tests * n_cells * N_BINS)
        return counts.reshape(n_tests, n_cells, N_BINS)
