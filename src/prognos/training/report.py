"""Figures from cross-validation: per member and for the ensemble, and per operating regime."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prognos.training.cv import CVResult
from prognos.training.metrics import (
    classification_metrics,
    expected_cost,
    interval_coverage,
    mean_interval_width,
    open_share,
    recall_gap_check,
    regression_metrics,
    sliced_metrics,
)

METRIC_COLUMNS = [
    "rmse",
    "mae",
    "phm08",
    "rmse_uncapped",
    "precision",
    "recall",
    "f1",
    "f2",
    "roc_auc",
    "pr_auc",
    "brier",
    "f2_at_f2_threshold",
    "expected_cost",
    "cost_per_asset_cut",
    "coverage",
    "coverage_capped",
    "interval_width",
    "open_share",
]
# Predicted-RUL bands for the per-band interval coverage (upper edges, cycles).
BAND_EDGES = (25.0, 50.0, 75.0, 100.0)


def model_metrics(
    oof: pd.DataFrame, name: str, cost_missed: float, cost_false_alarm: float
) -> dict[str, float]:
    """Every reported figure for one model's cross-fitted out-of-fold predictions.

    RMSE is against the capped RUL (the piecewise-linear target, as in the C-MAPSS literature);
    ``rmse_uncapped`` is against the true RUL. Precision/recall/F-scores use the alerts, whose
    threshold was chosen on the other folds.
    """
    failed = oof["failed"].to_numpy()
    rul = oof[f"rul@{name}"].to_numpy()
    proba = oof[f"proba@{name}"].to_numpy()
    alert = oof[f"alert@{name}"].to_numpy()
    scores = classification_metrics(failed, proba, 0.5)
    at_alerts = classification_metrics(failed, alert, 0.5)
    at_f2 = classification_metrics(failed, oof[f"alert_f2@{name}"].to_numpy(), 0.5)
    cost = expected_cost(failed, alert.astype(bool), cost_missed, cost_false_alarm)
    lower, upper = oof[f"rul_lower@{name}"].to_numpy(), oof[f"rul_upper@{name}"].to_numpy()
    figures = {
        **regression_metrics(oof["rul_capped"].to_numpy(), rul),
        "rmse_uncapped": regression_metrics(oof["rul"].to_numpy(), rul)["rmse"],
        **{k: at_alerts[k] for k in ("precision", "recall", "f1", "f2")},
        **{k: scores[k] for k in ("roc_auc", "pr_auc", "brier")},
        "f2_at_f2_threshold": at_f2["f2"],
        "expected_cost": cost,
        "cost_per_asset_cut": cost / max(len(oof), 1),
        # The interval claims the true remaining life, not the capped training target.
        "coverage": interval_coverage(oof["rul"].to_numpy(), lower, upper),
        "coverage_capped": interval_coverage(oof["rul_capped"].to_numpy(), lower, upper),
        "interval_width": mean_interval_width(lower, upper),
        "open_share": open_share(upper),
    }
    return {k: float(figures[k]) for k in METRIC_COLUMNS}


def band_coverage(oof: pd.DataFrame, name: str) -> pd.DataFrame:
    """Interval coverage of the true RUL per band of *predicted* RUL (what a planner sees).

    A conformal interval guarantees its coverage on average; this shows whether it holds where
    decisions are made (low predicted RUL) as well as near the cap.
    """
    rul, truth, capped = (oof[c].to_numpy() for c in (f"rul@{name}", "rul", "rul_capped"))
    lower, upper = oof[f"rul_lower@{name}"].to_numpy(), oof[f"rul_upper@{name}"].to_numpy()
    band = np.searchsorted(np.asarray(BAND_EDGES), rul, side="right")
    edges = (0.0, *BAND_EDGES, np.inf)
    rows = {}
    for b in range(len(edges) - 1):
        inside = band == b
        if not inside.any():
            continue
        label = f"{edges[b]:g}-{edges[b + 1]:g}"
        rows[label] = {
            "rows": float(inside.sum()),
            "coverage": interval_coverage(truth[inside], lower[inside], upper[inside]),
            "coverage_capped": interval_coverage(capped[inside], lower[inside], upper[inside]),
            "interval_width": mean_interval_width(lower[inside], upper[inside]),
            "open_share": open_share(upper[inside]),
        }
    return pd.DataFrame(rows).T


def metrics_table(result: CVResult, cost_missed: float, cost_false_alarm: float) -> pd.DataFrame:
    """Rows: each member alone, then the ensemble; columns: ``METRIC_COLUMNS``."""
    names = [*result.members, *(["ensemble"] if result.ensemble else [])]
    return pd.DataFrame(
        {name: model_metrics(result.oof, name, cost_missed, cost_false_alarm) for name in names}
    ).T[METRIC_COLUMNS]


def regime_slices(result: CVResult, name: str = "ensemble") -> tuple[pd.DataFrame, list[str]]:
    """Per-regime figures for one model and warnings where a regime's recall lags the whole."""
    oof = result.oof
    alert = oof[f"alert@{name}"].to_numpy()
    frame = sliced_metrics(
        oof["rul_capped"].to_numpy(),
        oof[f"rul@{name}"].to_numpy(),
        oof["failed"].to_numpy(),
        alert,
        0.5,
        oof["regime"].astype(int).to_numpy(),
    )
    overall = classification_metrics(oof["failed"].to_numpy(), alert, 0.5)["recall"]
    return frame, recall_gap_check(frame, float(overall)) if np.isfinite(overall) else []


def headline(metrics: pd.DataFrame) -> dict[str, float]:
    """The figures a run is judged by: the ensemble's, or the only model's."""
    rows = metrics.to_dict(orient="index")
    row = rows["ensemble"] if "ensemble" in rows else next(iter(rows.values()))
    return {str(k): float(v) for k, v in row.items()}
