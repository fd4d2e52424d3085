"""The drift engine: a batch of readings against a model's reference profile.

**Aging is not drift.** A fleet that ages moves its sensors along the degradation path; compared
with the whole training set it looks drifted, a retrain follows and learns nothing. The engine
compares like with like instead (our choice among the methods the literature offers: regime-
conditioned alignment, Nejjar et al. 2023 on N-CMAPSS; residuals from the expected state, as in
Zenisek et al. 2019):

- **within the operating regime**: every sensor standardised with the model's own per-regime
  scalers; readings far from every known condition are counted apart (``operating_condition``),
  which is what a fleet flying conditions the model never saw (C-MAPSS FD002 for an FD001 model)
  shows first;
- **within the health stage**: the stage is the asset's smoothed health index cut at reference
  quantiles (six stages; the last holds the final ~2% of readings), and each value is a residual
  from its expected value in its (regime, stage) cell, in that cell's standard deviations. The
  expected value follows, linearly within the cell, the age in cycles (cycle fleets) and the
  smoothed health index *without the column's own share* (so a fault cannot explain itself
  away). The reference histogram is reweighted to the batch's own cell mix, so an older (or
  younger) fleet expects more late-stage (early-stage) readings and gets them. The stage comes
  from the readings, not from served ``predicted_rul``: the same low-capacity function at
  training and now, whereas the model's predictions on its own training rows are in-sample
  (tighter than on new assets), which would make the strata unlike;
- per column four tests: **level** (PSI of the residual distribution), **shift** (the mean
  residual), **dynamics** for the channels (PSI of within-asset first differences: added noise,
  frozen sensors) and **change** (the share of assets whose own level moved between the halves
  of their readings, :mod:`prognos.monitoring.change`: it cancels what makes assets differ from
  each other, which bounds every fleet-level test). Thresholds are calibrated on the training
  fleet (:mod:`prognos.monitoring.stats`, :mod:`prognos.monitoring.calibrate`).

What it cannot tell apart: a fleet-wide change that moves every sensor exactly along the
degradation direction looks like aging (only its timing would say otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prognos.fleet import ASSET, TIME
from prognos.monitoring import change
from prognos.monitoring.profile import ReferenceProfile
from prognos.monitoring.stats import MIN_ROWS, Scores, mean_shift, psi, score_batch
from prognos.monitoring.strata import Rows, prepare_rows, readings_arrays

# 1% of readings in a condition the model never saw (and at least this many readings) is drift:
# the reference has none past the cutoff by construction (it sits at 1.5x its own extremes).
CONDITION_SHARE = 0.01
CONDITION_MIN_READINGS = 10
# Predicted outputs: conventional effect sizes (reported; not part of ``drift_detected``).
PREDICTION_PSI = 0.25
PREDICTION_RUL_SHIFT = 0.5  # in reference standard deviations of the predicted RUL


@dataclass
class ColumnDrift:
    """One column's verdict; ``score``/``threshold`` are those of the test that decided it."""

    name: str
    kind: str  # sensor | health_index | feature | setting
    score: float | None
    threshold: float | None
    drifted: bool
    test: str  # level | dynamics | condition
    rows: int
    tests: dict[str, dict[str, float | None]] = field(default_factory=dict)
    mean_shift: float | None = None  # mean residual, reference standard deviations
    changed_assets: list[Any] = field(default_factory=list)  # up to ten, from the change test

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "score": _num(self.score),
            "threshold": _num(self.threshold),
            "drifted": self.drifted,
            "test": self.test,
            "rows": self.rows,
            "mean_shift": _num(self.mean_shift),
            "changed_assets": self.changed_assets,
            "tests": {k: {n: _num(v) for n, v in t.items()} for k, t in self.tests.items()},
        }


@dataclass
class DriftResult:
    """Drift of one batch. ``drift_detected``: any column drifted (settings included)."""

    drift_detected: bool
    share_drifted: float
    columns: dict[str, ColumnDrift]
    prediction_drift: dict[str, Any] | None
    operating_condition: dict[str, Any]
    stages: dict[str, Any]
    rows: int
    assets: int
    histograms: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "drift_detected": self.drift_detected,
            "share_drifted": self.share_drifted,
            "rows": self.rows,
            "assets": self.assets,
            "drifted_columns": [n for n, c in self.columns.items() if c.drifted],
            "operating_condition": self.operating_condition,
            "stages": self.stages,
            "columns": {name: column.to_json() for name, column in self.columns.items()},
            "prediction_drift": self.prediction_drift,
        }


def detect_drift(
    profile: ReferenceProfile, readings: pd.DataFrame, predictions: pd.DataFrame | None = None
) -> DriftResult:
    """Compare ``readings`` (canonical columns; key feature columns tested when present) with
    the profile; ``predictions`` (``failure_probability``, optionally ``rul``, ``asset_id`` and
    ``time`` to place them in their cell) adds ``prediction_drift``."""
    layout, normaliser = profile.layout, profile.normaliser
    arrays = readings_arrays(readings, normaliser, profile.features)
    rows = prepare_rows(normaliser, profile.conditions, layout.stages.smoothing, *arrays)
    columns = _setting_columns(profile, rows)
    cell = layout.cells(rows)
    known_assets = rows.n_assets
    histograms: dict[str, dict[str, list[float]]] = {}
    if int(rows.known.sum()) >= MIN_ROWS:
        residual = layout.residuals(rows, cell)
        usable = layout.usable(rows, residual)
        scores = score_batch(layout.counts(cell, layout.bins(rows, residual)), profile.props)
        limits, shift_limits = profile.calibration.thresholds(known_assets, scores.rows)
        shifts = mean_shift(residual, usable)
        moved = _changes(profile, rows, residual, usable)
        columns.update(
            _channel_columns(
                profile, scores, limits, shifts, shift_limits, usable.sum(axis=0), moved
            )
        )
        for t, name in enumerate(_test_names(profile)):
            histograms[name] = {
                "observed": scores.observed[t].tolist(),
                "expected": scores.expected[t].tolist(),
            }
    else:
        for name, kind in zip(layout.columns, profile.kinds, strict=True):
            columns[name] = ColumnDrift(name, kind, None, None, False, "level", 0)
    tested = [c for c in columns.values() if c.score is not None]
    drifted = [c for c in tested if c.drifted]
    return DriftResult(
        drift_detected=bool(drifted),
        share_drifted=len(drifted) / len(tested) if tested else 0.0,
        columns=columns,
        prediction_drift=None
        if predictions is None
        else prediction_drift(profile, rows, predictions),
        operating_condition=_condition_summary(profile, rows),
        stages=_stage_summary(profile, rows, cell),
        rows=rows.n_rows,
        assets=len(np.unique(rows.asset)),
        histograms=histograms,
    )


def _test_names(profile: ReferenceProfile) -> list[str]:
    layout = profile.layout
    return [
        *(f"{c}:level" for c in layout.columns),
        *(f"{c}:dynamics" for c in layout.columns[: layout.n_dynamics]),
    ]


def _channel_columns(
    profile: ReferenceProfile,
    scores: Scores,
    limits: np.ndarray,
    shifts: np.ndarray,
    shift_limits: np.ndarray,
    counts: np.ndarray,
    moved: list[tuple[float | None, float, list[Any]]],
) -> dict[str, ColumnDrift]:
    layout = profile.layout
    n_columns = len(layout.columns)
    out = {}
    for j, (name, kind) in enumerate(zip(layout.columns, profile.kinds, strict=True)):
        shift = _num(shifts[j]) if counts[j] >= MIN_ROWS else None
        tests: dict[str, dict[str, float | None]] = {
            "level": {"score": _num(scores.score[j]), "threshold": float(limits[j])},
            "shift": {
                "score": None if shift is None else abs(shift),
                "threshold": float(shift_limits[j]),
            },
        }
        if j < layout.n_dynamics:
            t = n_columns + j
            tests["dynamics"] = {"score": _num(scores.score[t]), "threshold": float(limits[t])}
        share, limit, assets = moved[j]
        tests["change"] = {"score": share, "threshold": limit}
        ratios = {
            k: float(v["score"]) / float(v["threshold"])
            for k, v in tests.items()
            if v["score"] is not None and v["threshold"]
        }
        decisive = max(ratios, key=lambda k: ratios[k]) if ratios else "level"
        out[name] = ColumnDrift(
            name=name,
            kind=kind,
            score=tests[decisive]["score"],
            threshold=tests[decisive]["threshold"],
            drifted=any(r > 1.0 for r in ratios.values()),
            test=decisive,
            rows=int(counts[j]),
            tests=tests,
            mean_shift=shift,
            changed_assets=assets,
        )
    return out


def _changes(
    profile: ReferenceProfile, rows: Rows, residual: np.ndarray, usable: np.ndarray
) -> list[tuple[float | None, float, list[Any]]]:
    """Per column: share of assets whose level changed within the batch, the threshold share
    (the binomial count limit less a half, so that the share exceeds it exactly at the limit)
    and up to ten of the assets."""
    calibration = profile.calibration
    asset = rows.asset[rows.known]
    cell = profile.layout.cells(rows)
    weights = profile.normaliser.health_weights
    changes = change.asset_changes(profile.layout, rows, cell, residual, usable, weights)
    differences = changes.net(calibration.change_slopes)
    moved = change.changed(differences, changes.groups, calibration.change_limits)
    ids = pd.Series(rows.asset_ids[rows.known]).groupby(asset).first()
    alpha = calibration.alpha / calibration.n_tests
    out: list[tuple[float | None, float, list[Any]]] = []
    for j in range(differences.shape[1]):
        eligible = int(np.isfinite(differences[:, j]).sum())
        if eligible == 0:
            out.append((None, 1.0, []))
            continue
        limit = change.binomial_limit(eligible, alpha)
        hit = np.flatnonzero(moved[:, j])
        names = [_plain(ids.get(int(a))) for a in hit[:10]]
        out.append((len(hit) / eligible, (limit - 0.5) / eligible, names))
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _setting_columns(profile: ReferenceProfile, rows: Rows) -> dict[str, ColumnDrift]:
    """Per setting: the share of readings past the cutoff of the nearest known condition."""
    out = {}
    n = max(rows.n_rows, 1)
    for k, name in enumerate(profile.normaliser.settings):
        count = int(rows.outside[:, k].sum())
        share = count / n
        out[name] = ColumnDrift(
            name=name,
            kind="setting",
            score=share,
            threshold=CONDITION_SHARE,
            drifted=share > CONDITION_SHARE and count >= CONDITION_MIN_READINGS,
            test="condition",
            rows=rows.n_rows,
        )
    return out


def _condition_summary(profile: ReferenceProfile, rows: Rows) -> dict[str, Any]:
    unseen = int((~rows.known).sum())
    share = unseen / max(rows.n_rows, 1)
    return {
        "share_unseen": share,
        "unseen_readings": unseen,
        "threshold": CONDITION_SHARE,
        "drifted": share > CONDITION_SHARE and unseen >= CONDITION_MIN_READINGS,
        "cutoff_spreads": profile.conditions.cutoff,
        "known_regimes": int(profile.conditions.centres.shape[0]),
    }


def _stage_summary(profile: ReferenceProfile, rows: Rows, cell: np.ndarray) -> dict[str, Any]:
    stages = profile.layout.stages
    n_stages = stages.n_stages
    batch = np.bincount(cell % n_stages, minlength=n_stages) / max(len(cell), 1)
    reference = profile.stage_mix.reshape(-1, n_stages).sum(axis=0)
    return {
        "batch_share": batch.tolist(),
        "reference_share": reference.tolist(),
        "reference_life_fraction": stages.life_fraction,
        "reference_rul": stages.rul,
    }


def prediction_drift(
    profile: ReferenceProfile, rows: Rows, predictions: pd.DataFrame
) -> dict[str, Any] | None:
    """PSI of the failure probability and shift of the predicted RUL against the model's
    predictions of the training fleet, in the batch's cell mix when the predictions can be placed
    (``asset_id`` and ``time`` columns), pooled otherwise."""
    reference = profile.predictions
    if reference is None or "failure_probability" not in predictions.columns or predictions.empty:
        return None
    proba = predictions["failure_probability"].to_numpy(np.float64)
    cell = np.full(len(predictions), -1, dtype=np.intp)
    if {ASSET, TIME} <= set(predictions.columns) and rows.known.any():
        cells = profile.layout.cells(rows)
        keys = pd.MultiIndex.from_arrays([rows.asset_ids[rows.known], rows.time[rows.known]])
        where = keys.get_indexer(pd.MultiIndex.from_arrays([predictions[ASSET], predictions[TIME]]))
        cell[where >= 0] = cells[where[where >= 0]]
    placed = cell >= 0
    adjusted = bool(placed.any())
    if adjusted:
        weights = np.bincount(cell[placed], minlength=len(reference.rul_mean)).astype(np.float64)
        proba = proba[placed]
    else:
        weights = np.ones(len(reference.rul_mean))
    weights = weights / weights.sum()
    bins = np.searchsorted(reference.proba_edges, proba, side="right")
    observed = np.bincount(bins, minlength=len(reference.proba_edges) + 1) / max(len(proba), 1)
    expected = weights @ reference.proba_props
    n = np.asarray([float(len(proba))])
    out: dict[str, Any] = {
        "rows": len(proba),
        "stage_adjusted": adjusted,
        "reference_rows": reference.rows,
        "failure_probability_psi": float(psi(observed[None], expected[None], n)[0]),
        "failure_probability_threshold": PREDICTION_PSI,
        "failure_probability_mean": float(proba.mean()) if len(proba) else None,
    }
    drifted = out["failure_probability_psi"] > PREDICTION_PSI
    if "rul" in predictions.columns:
        rul = predictions["rul"].to_numpy(np.float64)
        rul = rul[placed] if adjusted else rul
        expected_mean = float(weights @ reference.rul_mean)
        spread = float(np.sqrt(weights @ (reference.rul_std**2)))
        shift = float(rul.mean()) - expected_mean if len(rul) else 0.0
        out.update(
            {
                "rul_mean": float(rul.mean()) if len(rul) else None,
                "rul_expected": expected_mean,
                "rul_shift": shift,
                "rul_shift_sd": shift / spread if spread > 0 else None,
                "rul_shift_threshold_sd": PREDICTION_RUL_SHIFT,
            }
        )
        drifted = drifted or abs(shift) > PREDICTION_RUL_SHIFT * spread
    out["drifted"] = bool(drifted)
    return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None
