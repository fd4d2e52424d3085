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
    ConformalIntervals,
    bayes_threshold,
    f2_optimal_threshold,
)
from prognos.models.ensemble import LogitStack, blend, fit_weights_rul
from prognos.models.selection import alert_cost, best_subset, rul_loss

PREDICTION_COLUMNS = [
    "asset_id",
    "cycle",
    "rul",
    "rul_lower",
    "rul_upper",
    "rul_open_above",
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
    """What turns member outputs into a decision; learned on out-of-fold predictions.

    RUL: a convex blend of the members' estimates with a Mondrian conformal interval calibrated
    against the true RUL, open above the cap. Failure: the members' log-odds stacked and
    calibrated in one step (:class:`LogitStack`), an alert where acting costs less than not
    acting in expectation (:func:`bayes_threshold`: the probabilities are calibrated).
    """

    rul_weights: dict[str, float]
    stack: LogitStack
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
        rul_cap: float | None = None,
        select: bool = True,
    ) -> PostProcessing:
        """From out-of-fold columns ``rul__{member}``, ``proba__{member}``, ``rul`` (true),
        ``rul_capped`` and ``failed``. ``rul_cap``: intervals reaching it are open above.
        ``select``: keep only the members that pay out of fold (else all, by the fits alone)."""
        rul = {m: oof[f"rul__{m}"].to_numpy() for m in members}
        proba = {m: oof[f"proba__{m}"].to_numpy() for m in members}
        capped = oof["rul_capped"].to_numpy(dtype=np.float64)
        failed = oof["failed"].to_numpy()
        threshold = bayes_threshold(cost_missed, cost_false_alarm)
        # Members that do not pay out of fold get weight / slope 0 (models.selection).
        for_rul, for_alert = list(members), list(members)
        if select:
            for_rul = best_subset(oof, members, rul_loss())
            cost = alert_cost(threshold, cost_missed, cost_false_alarm)
            for_alert = best_subset(oof, members, cost, prefer="all")
        chosen = fit_weights_rul({m: rul[m] for m in for_rul}, capped)
        rul_weights = {m: chosen.get(m, 0.0) for m in members}
        stack = LogitStack().fit({m: proba[m] for m in for_alert}, failed)
        stack.coef_ = {m: stack.coef_.get(m, 0.0) for m in members}
        calibrated = stack.predict(proba)
        # The interval claims the true RUL. Where it is unknown (a censored life in a retraining
        # set is only known to exceed the cap) the capped value is the nearest true statement.
        raw = oof["rul"].to_numpy(dtype=np.float64) if "rul" in oof else capped
        truth = np.where(np.isfinite(raw), raw, capped)
        # Six bands where the rows allow (>= 50 each, else merged): RUL errors change fast.
        intervals = ConformalIntervals(coverage=coverage, open_from=rul_cap).fit(
            truth, np.maximum(blend(rul, rul_weights), 0.0), bins=6
        )
        return cls(
            rul_weights=rul_weights,
            stack=stack,
            threshold=threshold,
            f2_threshold=f2_optimal_threshold(failed, calibrated),
            intervals=intervals,
        )

    @property
    def members(self) -> list[str]:
        """Members whose predictions the decision uses (weight or slope above 0)."""
        used = {m for m, w in self.rul_weights.items() if w > 0}
        used |= {m for m, c in self.stack.coef_.items() if c > 0}
        return [m for m in self.rul_weights if m in used]

    def apply(
        self, rul: dict[str, NDArray[np.float64]], proba: dict[str, NDArray[np.float64]]
    ) -> dict[str, NDArray[np.float64]]:
        rul_hat = np.maximum(blend(rul, self.rul_weights), 0.0)
        lower, upper = self.intervals.interval(rul_hat)
        calibrated = self.stack.predict(proba)
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

    def member_outputs(
        self, X: ModelInput
    ) -> dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]:
        """(RUL, failure probability) of each member the decision uses, one call each."""
        return {m: self.members[m].predict_rul_and_proba(X) for m in self.post.members}

    def predict_rows(
        self,
        X: ModelInput,
        outputs: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]] | None = None,
    ) -> dict[str, NDArray[np.float64]]:
        """The served outputs of ``X``'s rows; ``outputs``: :meth:`member_outputs` of ``X``
        when the caller already has them (the explanation reuses them)."""
        if outputs is None:
            outputs = self.member_outputs(X)
        return self.post.apply(
            {m: rul for m, (rul, _) in outputs.items()},
            {m: proba for m, (_, proba) in outputs.items()},
        )

    def predict(self, readings: pd.DataFrame, *, last_only: bool = True) -> pd.DataFrame:
        """Predictions per asset at its last reading (or at every reading), ``PREDICTION_COLUMNS``.

        An interval open above (the model cannot see past the RUL cap) has ``rul_upper`` NaN (an
        empty CSV cell) and ``rul_open_above`` True: the RUL is "more than ``rul_lower``".

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
                "rul_upper": np.where(np.isfinite(out["rul_upper"]), out["rul_upper"], np.nan),
                "rul_open_above": ~np.isfinite(out["rul_upper"]),
                "failure_probability": out["proba"],
                "alert": out["alert"].astype(bool),
            }
        )
