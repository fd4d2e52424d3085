"""Scoring predictions against known true RUL at each asset's last cycle (``prognos evaluate``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prognos.errors import DataSourceError
from prognos.training.metrics import (
    classification_metrics,
    expected_cost,
    interval_coverage,
    mean_interval_width,
    open_share,
    regression_metrics,
)


def read_truth(path: Path, assets: pd.Series) -> pd.Series:
    """True RUL per asset from a file: one number per line in asset order, or ``asset_id,rul``.

    The one-per-line form is matched to ``assets`` sorted ascending (the C-MAPSS convention).
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataSourceError(f"cannot read truth file {path}: {exc}") from exc
    first = text.strip().splitlines()[0] if text.strip() else ""
    try:
        if "," in first:
            frame = pd.read_csv(path)
            if not {"asset_id", "rul"} <= set(frame.columns):
                raise DataSourceError(f"{path}: a CSV truth file needs columns asset_id,rul")
            truth = frame.set_index("asset_id")["rul"].astype(float)
        else:
            values = [float(v) for v in text.split()]
            ordered = np.sort(assets.unique())
            if len(values) != len(ordered):
                raise DataSourceError(f"{path} has {len(values)} values for {len(ordered)} assets")
            truth = pd.Series(values, index=ordered, dtype=float)
    except ValueError as exc:
        raise DataSourceError(f"{path}: not a list of numbers: {exc}") from exc
    missing = sorted(set(assets) - set(truth.index))
    if missing:
        raise DataSourceError(f"{path} has no true RUL for assets {missing[:10]}")
    return truth.loc[assets.to_numpy()].reset_index(drop=True)


def evaluate_predictions(
    predictions: pd.DataFrame,
    truth: pd.Series,
    *,
    horizon: int,
    rul_cap: float,
    cost_missed: float = 50_000.0,
    cost_false_alarm: float = 2_000.0,
) -> dict[str, float]:
    """All the training metrics for one prediction per asset against its true RUL."""
    true = truth.to_numpy(dtype=float)
    failed = (true <= horizon).astype(int)
    pred = predictions["rul"].to_numpy(dtype=float)
    alert = predictions["alert"].to_numpy(dtype=bool)
    scores = classification_metrics(failed, predictions["failure_probability"].to_numpy(), 0.5)
    at_alert = classification_metrics(failed, alert.astype(float), 0.5)
    lower = predictions["rul_lower"].to_numpy(dtype=float)
    # An empty upper end is an interval open above ("more than rul_lower").
    upper = predictions["rul_upper"].fillna(np.inf).to_numpy(dtype=float)
    figures = {
        "assets": float(len(true)),
        **regression_metrics(true, pred),
        "rmse_capped_truth": regression_metrics(np.minimum(true, rul_cap), pred)["rmse"],
        **{k: at_alert[k] for k in ("precision", "recall", "f1", "f2")},
        **{k: scores[k] for k in ("roc_auc", "pr_auc", "brier")},
        "expected_cost": expected_cost(failed, alert, cost_missed, cost_false_alarm),
        "coverage": interval_coverage(true, lower, upper),
        "coverage_capped_truth": interval_coverage(np.minimum(true, rul_cap), lower, upper),
        "interval_width": mean_interval_width(lower, upper),
        "open_share": open_share(upper),
    }
    return {k: float(v) for k, v in figures.items()}
