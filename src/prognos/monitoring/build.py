"""Building the reference profile from the training fleet, once, at training time.

Steps: fit the known operating conditions and the health-stage cut points; per (regime, stage)
cell, the mean and spread of every monitored column; bin edges from the reference residuals;
per-cell bin proportions; then the null calibration by asset-grouped resampling (see
:mod:`prognos.monitoring.stats`). The only training-time dependency is the model's fitted feature
pipeline (its normalisation and health index); the model's members are used only to choose the
key features and to predict the training rows for the prediction reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from prognos.features.pipeline import FeaturePipeline
from prognos.fleet import ASSET, TIME
from prognos.models.bundle import ModelBundle, model_input
from prognos.monitoring.calibrate import Reference, asset_statistics, calibrate
from prognos.monitoring.profile import PredictionReference, ReferenceProfile
from prognos.monitoring.stats import SHRINK, reference_props
from prognos.monitoring.strata import (
    N_BINS,
    Conditions,
    Layout,
    Normaliser,
    Rows,
    Stages,
    prepare_rows,
    readings_arrays,
)

Array = NDArray[np.float64]

STAGE_QUANTILES = (0.4, 0.65, 0.82, 0.93, 0.98)  # six health stages; the last: ~2% of readings
SMOOTHING = 10  # readings in the health index's trailing mean
LEVEL_QUANTILES = (0.005, *np.linspace(0.1, 0.9, 9), 0.995)
DYNAMICS_QUANTILES = (*np.linspace(0.1, 0.9, 9), 0.99)
PROBA_EDGES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9)
KEY_FEATURES = 5
PREDICTED_ROWS = 20_000  # training rows the model predicts for the prediction reference


def profile_from_training(
    readings: pd.DataFrame, labels: pd.DataFrame, bundle: ModelBundle, oof: pd.DataFrame
) -> str:
    """The training flow's hook (:data:`prognos.training.flow.ReferenceBuilder`): JSON text.

    ``oof`` is not used: the cross-validation's cut points lie where the true RUL is at most 1.2
    caps, so they leave out early life, and a fleet cut early (C-MAPSS test_FD001) then shows a
    predicted-RUL "shift" of +17 cycles (measured); the final model's predictions on its own
    training rows cover every stage (+3.7 cycles there).
    """
    del oof
    readings = readings.reset_index(drop=True)
    features = key_features(bundle)
    rows = np.arange(len(readings))
    if len(rows) > PREDICTED_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(len(rows), PREDICTED_ROWS, replace=False))
    x = model_input(bundle.pipeline, readings, bundle.window, rows)
    out = bundle.predict_rows(x)
    predictions = pd.DataFrame(
        {
            ASSET: readings[ASSET].to_numpy()[rows],
            TIME: readings[TIME].to_numpy()[rows],
            "failure_probability": out["proba"],
            "rul": out["rul"],
        }
    )
    values = bundle.pipeline.transform(readings)[features] if features else None
    profile = build_profile(
        readings,
        bundle.pipeline,
        labels=labels,
        features=values,
        predictions=predictions,
        history=bundle.pipeline.spec_.history_length,
    )
    profile.meta.update(
        {k: bundle.metadata[k] for k in ("source", "data_hash") if k in bundle.metadata}
    )
    return profile.to_json()


def key_features(bundle: ModelBundle, top: int = KEY_FEATURES) -> list[str]:
    """The model's most important features by the XGBoost member's gain, age and regime aside
    (they are the batch's shape, not the sensors')."""
    importances = getattr(bundle.members.get("xgboost"), "feature_importances_", None)
    if not isinstance(importances, dict):
        return []
    ranked = sorted(importances.items(), key=lambda item: -float(item[1]))
    return [str(name) for name, _ in ranked if name not in ("age", "regime")][:top]


def build_profile(
    readings: pd.DataFrame,
    pipeline: FeaturePipeline,
    *,
    labels: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    predictions: pd.DataFrame | None = None,
    history: int = 0,
    resamples: int = 100,
    seed: int = 0,
    stage_quantiles: Sequence[float] | None = None,
) -> ReferenceProfile:
    """The reference profile of a training fleet (readings with whole lives, canonical columns).

    ``features``: key feature values aligned with ``readings`` (tested after each asset's first
    ``history`` readings); ``predictions``: the model's predictions (``asset_id``, ``time``,
    ``failure_probability``, ``rul``); ``labels``: ``rul`` per row, for the stage descriptions.
    """
    readings = readings.reset_index(drop=True)
    normaliser = Normaliser.from_pipeline(pipeline, readings)
    names = [] if features is None else [str(c) for c in features.columns]
    frame = (
        readings
        if features is None
        else pd.concat([readings, features.set_axis(readings.index)], axis=1)
    )
    ids, time, settings, sensors, feature_block = readings_arrays(frame, normaliser, names)
    regime = normaliser.regime(settings)
    conditions = Conditions.fit(settings, regime, normaliser.n_regimes)
    rows = prepare_rows(
        normaliser, conditions, SMOOTHING, ids, time, settings, sensors, feature_block
    )
    quantiles = STAGE_QUANTILES if stage_quantiles is None else tuple(stage_quantiles)
    stages = _stages(rows, labels, quantiles)
    columns = [*normaliser.channels, *names]
    age_trend = pipeline.fleet.time_kind == "cycle"
    layout = _layout(
        rows,
        stages,
        columns,
        len(normaliser.channels),
        normaliser.n_regimes,
        history,
        age_trend,
        normaliser.health_weights,
    )
    cell = layout.cells(rows)
    counts, sums = asset_statistics(layout, rows)
    reference = Reference((ids, time, settings, sensors, feature_block), counts, sums)
    rng = np.random.default_rng(seed)
    calibration = calibrate(layout, normaliser, conditions, reference, resamples, rng)
    mix = np.bincount(cell, minlength=layout.n_cells) / max(len(cell), 1)
    kinds = ["sensor"] * len(normaliser.sensors) + ["health_index"] + ["feature"] * len(names)
    return ReferenceProfile(
        fleet=pipeline.fleet.name,
        normaliser=normaliser,
        conditions=conditions,
        layout=layout,
        kinds=kinds,
        props=reference_props(counts.sum(axis=0), layout.stages.n_stages),
        calibration=calibration,
        stage_mix=mix.astype(np.float64),
        predictions=_prediction_reference(predictions, rows, layout)
        if predictions is not None
        else None,
        meta={
            "rows": len(readings),
            "assets": int(readings[ASSET].nunique()),
            "regimes": normaliser.n_regimes,
            "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        },
    )


def _stages(rows: Rows, labels: pd.DataFrame | None, quantiles: tuple[float, ...]) -> Stages:
    smoothed = rows.smoothed
    edges = np.quantile(smoothed, quantiles) if len(smoothed) and quantiles else np.zeros(0)
    stage = np.searchsorted(edges, smoothed, side="right")
    life, rul = [], []
    if labels is not None and "rul" in labels.columns:
        true_rul = labels["rul"].to_numpy(np.float64)[rows.order][rows.known]
        length = (
            pd.Series(rows.position).groupby(rows.asset[rows.known]).transform("max").to_numpy()
            + 1.0
        )
        fraction = (rows.position + 1.0) / length
        for s in range(len(edges) + 1):
            mine = stage == s
            life.append(float(fraction[mine].mean()) if mine.any() else float("nan"))
            # A retraining set's censored rows have no RUL (NaN): the stage's mean is over the rest.
            known = mine & ~np.isnan(true_rul)
            rul.append(float(true_rul[known].mean()) if known.any() else float("nan"))
    return Stages(
        smoothing=SMOOTHING, edges=np.asarray(edges, np.float64), life_fraction=life, rul=rul
    )


def _layout(
    rows: Rows,
    stages: Stages,
    columns: list[str],
    n_channels: int,
    n_regimes: int,
    history: int,
    age_trend: bool,
    health_weights: Array,
) -> Layout:
    """Per-cell moments and trends (shrunk toward the stage's in thin cells), bin edges."""
    n_cells = n_regimes * stages.n_stages
    cell = rows.regime * stages.n_stages + stages.assign(rows.smoothed)
    # The health index is its own covariate: weight 1 leaves it none (a zero covariate).
    loo = np.zeros(len(columns))
    loo[: n_channels - 1], loo[n_channels - 1] = health_weights, 1.0
    probe = Layout(
        stages=stages,
        columns=columns,
        n_dynamics=n_channels,
        skip_first=[],
        mean=np.zeros(0),
        std=np.zeros(0),
        level_edges=np.zeros(0),
        dynamics_edges=np.zeros(0),
        slope=np.zeros(0),
        age_centre=np.zeros(0),
        age_low=np.zeros(0),
        age_high=np.zeros(0),
        health_slope=np.zeros(0),
        health_centre=np.zeros(0),
        loo_weights=loo,
    )
    age, health = probe.covariates(rows)
    moments = _cell_moments(
        rows.values, cell, age if age_trend else None, health, n_cells, stages.n_stages
    )
    moments["loo_weights"] = loo
    n_dyn = n_channels  # the channels have a dynamics test; features are smooth already
    skip = [0] * n_channels + [history] * (len(columns) - n_channels)
    draft = Layout(
        stages=stages,
        columns=columns,
        n_dynamics=n_dyn,
        skip_first=skip,
        level_edges=np.zeros((len(columns), N_BINS - 1)),
        dynamics_edges=np.zeros((n_dyn, N_BINS - 2)),
        **moments,
    )
    residual = draft.residuals(rows, cell)
    usable = draft.usable(rows, residual)
    level = np.zeros((len(columns), N_BINS - 1))
    for j in range(len(columns)):
        value = residual[usable[:, j], j]
        level[j] = np.quantile(value, LEVEL_QUANTILES) if len(value) else np.arange(N_BINS - 1)
    diff = draft.differences(rows)
    dynamics = np.zeros((n_dyn, N_BINS - 2))
    for j in range(n_dyn):
        value = diff[:, j][np.isfinite(diff[:, j]) & (diff[:, j] > 1e-12)]
        dynamics[j] = (
            np.quantile(value, DYNAMICS_QUANTILES) if len(value) else np.arange(N_BINS - 2)
        )
    return Layout(
        stages=stages,
        columns=columns,
        n_dynamics=n_dyn,
        skip_first=skip,
        level_edges=level,
        dynamics_edges=dynamics,
        **moments,
    )


def _cell_moments(
    values: Array,
    cell: NDArray[np.intp],
    age: Array | None,
    health: Array,
    n_cells: int,
    n_stages: int,
) -> dict[str, Array]:
    """Per cell and column: mean, linear trends on age and on the health covariate, and the
    residual spread. A thin cell is pulled by :data:`SHRINK` pseudo-readings toward its stage
    over all regimes (the values are normalised per regime, so a stage looks alike in every
    regime), and a thin stage toward all readings: pulling a late-stage cell toward the pooled
    mean would bias exactly the degraded channels."""
    ok = np.isfinite(values)

    def subset(mask: NDArray[np.bool_], prior: _Moments | None) -> _Moments:
        return _moments(
            values[mask], ok[mask], None if age is None else age[mask], health[mask], prior
        )

    everything = subset(np.ones(len(values), dtype=bool), None)
    by_stage = [subset(cell % n_stages == s, everything) for s in range(n_stages)]
    cells = [subset(cell == c, by_stage[c % n_stages]) for c in range(n_cells)]
    return {
        "mean": np.stack([m.mean for m in cells]),
        "std": np.sqrt(np.stack([np.where(m.var > 0, m.var, 1.0) for m in cells])),
        "slope": np.stack([m.slope for m in cells]),
        "age_centre": np.array([m.centre for m in cells]),
        "age_low": np.array([m.low for m in cells]),
        "age_high": np.array([m.high for m in cells]),
        "health_slope": np.stack([m.health_slope for m in cells]),
        "health_centre": np.stack([m.health_centre for m in cells]),
    }


@dataclass(frozen=True)
class _Moments:
    mean: Array
    var: Array
    slope: Array
    centre: float
    low: float
    high: float
    health_slope: Array
    health_centre: Array


def _moments(
    values: Array, ok: NDArray[np.bool_], age: Array | None, health: Array, prior: _Moments | None
) -> _Moments:
    """Moments of some rows, per column a least-squares fit on (age, health covariate), shrunk
    toward ``prior`` (none: the rows' own)."""
    n_columns = values.shape[1]
    ok = ok & np.isfinite(health)
    n = ok.sum(axis=0).astype(np.float64)
    y = np.where(ok, values, 0.0)
    m = y.sum(axis=0) / np.maximum(n, 1)
    dy = np.where(ok, y - m, 0.0)
    centre = low = high = 0.0
    da = np.zeros((len(values), n_columns))
    if age is not None and len(age) and np.isfinite(age).all():
        low, high = (float(q) for q in np.quantile(age, [0.01, 0.99]))
        a = np.clip(age, low, high)
        centre = float(a.mean())
        da = np.where(ok, (a - centre)[:, None], 0.0)
    h = np.where(ok, health, 0.0)
    health_centre = h.sum(axis=0) / np.maximum(n, 1)
    dh = np.where(ok, h - health_centre, 0.0)
    saa, shh, sah = (da**2).sum(0), (dh**2).sum(0), (da * dh).sum(0)
    say, shy = (da * dy).sum(0), (dh * dy).sum(0)
    det = saa * shh - sah**2
    solvable = det > 1e-9 * np.maximum(saa * shh, 1e-12)
    slope = np.where(solvable, (shh * say - sah * shy) / np.where(solvable, det, 1), 0.0)
    health_slope = np.where(solvable, (saa * shy - sah * say) / np.where(solvable, det, 1), 0.0)
    only_age, only_health = ~solvable & (saa > 0) & (shh == 0), ~solvable & (shh > 0)
    slope = np.where(only_age, say / np.maximum(saa, 1e-12), slope)
    health_slope = np.where(only_health & (saa == 0), shy / np.maximum(shh, 1e-12), health_slope)
    residual = dy - slope * da - health_slope * dh
    var = np.where(ok, residual, 0.0).__pow__(2).sum(axis=0) / np.maximum(n, 1)
    if prior is None:
        var = np.where(var > 0, var, 1.0)
        return _Moments(m, var, slope, centre, low, high, health_slope, health_centre)
    w = n / (n + SHRINK)
    if not len(values):
        centre, low, high = prior.centre, prior.low, prior.high
        health_centre = prior.health_centre
    return _Moments(
        mean=w * m + (1 - w) * prior.mean,
        var=w * var + (1 - w) * prior.var,
        slope=w * slope + (1 - w) * prior.slope,
        centre=centre,
        low=low,
        high=high,
        health_slope=w * health_slope + (1 - w) * prior.health_slope,
        health_centre=health_centre,
    )


def _prediction_reference(
    predictions: pd.DataFrame, rows: Rows, layout: Layout
) -> PredictionReference:
    """Predictions on training rows placed in the cell of their reading."""
    cell = layout.cells(rows)
    keys = pd.MultiIndex.from_arrays([rows.asset_ids[rows.known], rows.time[rows.known]])
    where = keys.get_indexer(pd.MultiIndex.from_arrays([predictions[ASSET], predictions[TIME]]))
    found = where >= 0
    at = cell[where[found]]
    proba = predictions["failure_probability"].to_numpy(np.float64)[found]
    rul = predictions["rul"].to_numpy(np.float64)[found]
    edges = np.asarray(PROBA_EDGES)
    bins = np.searchsorted(edges, proba, side="right")
    counts = np.zeros((layout.n_cells, len(edges) + 1))
    np.add.at(counts, (at, bins), 1.0)
    props = reference_props(counts[None], layout.stages.n_stages)[0]
    n = np.bincount(at, minlength=layout.n_cells).astype(np.float64)
    pooled_mean = float(rul.mean()) if len(rul) else 0.0
    pooled_var = float(rul.var()) if len(rul) else 1.0
    sums = np.bincount(at, weights=rul, minlength=layout.n_cells)
    squares = np.bincount(at, weights=rul**2, minlength=layout.n_cells)
    mean = (sums + SHRINK * pooled_mean) / (n + SHRINK)
    var = (squares - n * np.where(n > 0, sums / np.maximum(n, 1), 0) ** 2 + SHRINK * pooled_var) / (
        n + SHRINK
    )
    return PredictionReference(
        proba_edges=edges,
        proba_props=props,
        rul_mean=mean,
        rul_std=np.sqrt(np.maximum(var, 1e-9)),
        rows=int(found.sum()),
    )
