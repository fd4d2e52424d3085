"""Diagnostic plots logged with every training run (files, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve


def write_plots(
    oof: pd.DataFrame, importances: dict[str, float] | None, folder: Path, name: str = "ensemble"
) -> list[Path]:
    """PR curve, calibration curve, predicted vs true RUL, feature importance (top 20)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; chosen here, not at import, so importing has no effect
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    failed = oof["failed"].to_numpy()
    proba = oof[f"proba@{name}"].to_numpy()
    written = []

    fig, ax = plt.subplots(figsize=(5, 4))
    if failed.any():
        precision, recall, _ = precision_recall_curve(failed, proba)
        ax.plot(recall, precision)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (out of fold)")
    written.append(_save(fig, folder / "pr_curve.png"))

    fig, ax = plt.subplots(figsize=(5, 4))
    if 0 < failed.sum() < len(failed):
        observed, predicted = calibration_curve(failed, proba, n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title="Calibration")
    ax.legend()
    written.append(_save(fig, folder / "calibration_curve.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    truth, pred = oof["rul_capped"].to_numpy(), oof[f"rul@{name}"].to_numpy()
    ax.scatter(truth, pred, s=6, alpha=0.4)
    top = float(max(truth.max(initial=1.0), pred.max(initial=1.0)))
    ax.plot([0, top], [0, top], linestyle="--", color="grey")
    ax.set(xlabel="true RUL (capped)", ylabel="predicted RUL", title="RUL, out of fold")
    written.append(_save(fig, folder / "rul_pred_vs_true.png"))

    if importances:
        top20 = sorted(importances.items(), key=lambda kv: kv[1], reverse=True)[:20][::-1]
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.barh([k for k, _ in top20], np.array([v for _, v in top20]))
        ax.set(title="Feature importance (gain, xgboost RUL)")
        written.append(_save(fig, folder / "feature_importance.png"))
    return written


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
