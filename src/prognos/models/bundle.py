"""The deployable unit: fitted feature pipeline + members + everything that turns their outputs
into a decision (ensemble weights, calibration, alert threshold, RUL interval).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from prognos.features import FeaturePipeline
from prognos.fleet import ASSET, TIME, FleetSpec
from prognos.models.base import Member, ModelInput
from prognos.models.decision import (
    Calibrator,
    ConformalIntervals,
    cost_optimal_threshold,
    f2_optimal_threshold,
)
from prognos.models.ensemble import blend, fit_weights_proba, fit_weights_rul

PREDICTION_COLUMNS = [
    "asset_id",
    "cycle",
    "rul",
    "rul_lower",
    "rul_upper",
    "failure_probability",
    "alert",
]


def model_input(
    pipeline: FeaturePipeline,
    readings: pd.DataFrame,
    window: int,
    rows: NDArray[np.intp] | None = None,
) -> ModelInput:
    """Both views of the rows (feature matrix and sequences) from one fitted pipeline.

    ``rows`` (positions in ``readings``) builds only those rows, from the whole history.
    """
    features, sequences, lengths = pipeline.features_and_sequences(readings, window, rows)
    groups = readings[ASSET].to_numpy()
    return ModelInput(
        features=features.to_numpy(),
        feature_names=list(features.columns),
        sequences=sequences,
        lengths=lengths,
        groups=groups if rows is None else groups[rows],
    )


@dataclass
class PostProcessing:
    """What turns member outputs into a decision; learned on out-of-fold predictions."""

    rul_weights: dict[str, float]
    proba_weights: dict[str, float]
    calibrator: Calibrator
    threshold: float
    f2_threshold: float
    intervals: ConformalIntervals

    @classmethod
    def fit(
        cls,
        oof: pd.DataFrame,
        members: list[str],
        *,
        coverage: float,
        cost_missed: float,
        cost_false_alarm: float,
    ) -> PostProcessing:
        """From out-of-fold columns ``rul__{member}``, ``proba__{member}``, ``rul_capped``,
        ``failed`` and ``asset_id``."""
        rul = {m: oof[f"rul__{m}"].to_numpy() for m in members}
        proba = {m: oof[f"proba__{m}"].to_numpy() for m in members}
        truth = oof["rul_capped"].to_numpy()
        failed = oof["failed"].to_numpy()
        rul_weights = fit_weights_rul(rul, truth)
        proba_weights = fit_weights_proba(proba, failed)
        blended = blend(proba, proba_weights)
        calibrator = Calibrator().fit(blended, failed, groups=oof[ASSET].to_numpy())
        calibrated = calibrator.predict(blended)
        intervals = ConformalIntervals(coverage=coverage).fit(
            truth, np.maximum(blend(rul, rul_weights), 0.0)
        )
        return cls(
            rul_weights=rul_weights,
            proba_weights=proba_weights,
            calibrator=calibrator,
            threshold=cost_optimal_threshold(failed, calibrated, cost_missed, cost_false_alarm),
            f2_threshold=f2_optimal_threshold(failed, calibrated),
            intervals=intervals,
        )

    def apply(
        self, rul: dict[str, NDArray[np.float64]], proba: dict[str, NDArray[np.float64]]
    ) -> dict[str, NDArray[np.float64]]:
        rul_hat = np.maximum(blend(rul, self.rul_weights), 0.0)
        lower, upper = self.intervals.interval(rul_hat)
        calibrated = self.calibrator.predict(blend(proba, self.proba_weights))
        return {
            "rul": rul_hat,
            "rul_lower": lower,
            "rul_upper": upper,
            "proba": calibrated,
            "alert": (calibrated >= self.threshold).astype(np.float64),
            "alert_f2": (calibrated >= self.f2_threshold).astype(np.float64),
        }


@dataclass
class ModelBundle:
    """Everything needed to go from raw readings to decisions, pickled as one object."""

    fleet: FleetSpec
    pipeline: FeaturePipeline
    window: int
    horizon: int
    rul_cap: float
    members: dict[str, Member]
    post: PostProcessing
    metadata: dict[str, Any] = field(default_factory=dict)

    def predict_rows(self, X: ModelInput) -> dict[str, NDArray[np.float64]]:
        outputs = {m: self.members[m].predict_rul_and_proba(X) for m in self.post.rul_weights}
        return self.post.apply(
            {m: rul for m, (rul, _) in outputs.items()},
            {m: proba for m, (_, proba) in outputs.items()},
        )

    def predict(self, readings: pd.DataFrame, *, last_only: bool = True) -> pd.DataFrame:
        """Predictions per asset at its last reading (or at every reading), ``PREDICTION_COLUMNS``.

        Features need each asset's history, so pass whole histories even for the last row.
        """
        rows = np.arange(len(readings))
        if last_only:
            last = readings.reset_index(drop=True).groupby(ASSET, sort=False)[TIME].idxmax()
            rows = np.sort(last.to_numpy())
        out = self.predict_rows(model_input(self.pipeline, readings, self.window, rows))
        return pd.DataFrame(
            {
                "asset_id": readings[ASSET].to_numpy()[rows],
                "cycle": readings[TIME].to_numpy()[rows],
                "rul": out["rul"],
                "rul_lower": out["rul_lower"],
                "rul_upper": out["rul_upper"],
                "failure_probability": out["proba"],
                "alert": out["alert"].astype(bool),
            }
        )
