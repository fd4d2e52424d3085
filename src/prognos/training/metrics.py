"""Evaluation metrics for both tasks, in the units the business cares about.

Pure NumPy / scikit-learn, no I/O. Conventions shared by every function here:

- an alert is raised when ``proba >= threshold`` (as in ``sklearn.metrics.precision_recall_curve``,
  so thresholds chosen in :mod:`prognos.models.decision` mean the same thing here);
- a ratio whose denominator is zero (recall without positives, precision without alerts, an AUC
  with one class) is ``nan``, never an exception or a silent 0: a slice without failures has no
  recall, it does not have a recall of 0;
- inputs are 1-D and of equal length; non-finite values raise ``ValueError`` (a NaN prediction is
  a bug upstream and must not vanish into an average).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, roc_auc_score

# PHM08 asymmetry: an early prediction (d < 0) is divided by 13, a late one by 10, so predicting
# failure too late costs more than predicting it equally too early.
_PHM08_EARLY = 13.0
_PHM08_LATE = 10.0

COST_MISSED = 50_000.0  # an unplanned failure: downtime, secondary damage, emergency repair
COST_FALSE_ALARM = 2_000.0  # a needless inspection


# -- regression -------------------------------------------------------------------------------


def phm08_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """PHM08 challenge score: sum of ``exp(-d/13) - 1`` (d < 0) or ``exp(d/10) - 1`` (d >= 0).

    ``d = y_pred - y_true``: a late prediction (d > 0, the engine fails before we said) is
    penalised more than an early one. It is a *sum*, as in the challenge, so it grows with the
    number of rows and only compares models on the same rows; use :func:`phm08_score_mean` to
    compare data sets of different sizes. Lower is better; 0 is perfect.
    """
    d = _diff(y_true, y_pred)
    return float(_phm08_terms(d).sum())


def phm08_score_mean(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean per-row PHM08 score (``nan`` for no rows): comparable across data-set sizes."""
    d = _diff(y_true, y_pred)
    return float(_phm08_terms(d).mean()) if d.size else math.nan


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """``rmse``, ``mae``, ``phm08`` (sum) and ``phm08_mean`` of RUL predictions (nan if empty)."""
    d = _diff(y_true, y_pred)
    if not d.size:
        return {"rmse": math.nan, "mae": math.nan, "phm08": 0.0, "phm08_mean": math.nan}
    terms = _phm08_terms(d)
    return {
        "rmse": float(np.sqrt(np.mean(d * d))),
        "mae": float(np.mean(np.abs(d))),
        "phm08": float(terms.sum()),
        "phm08_mean": float(terms.mean()),
    }


def _phm08_terms(d: NDArray[np.float64]) -> NDArray[np.float64]:
    # expm1 keeps precision for small |d|; where() evaluates both branches, both are finite.
    return np.where(d < 0, np.expm1(-d / _PHM08_EARLY), np.expm1(d / _PHM08_LATE))


def _diff(y_true: ArrayLike, y_pred: ArrayLike) -> NDArray[np.float64]:
    true, pred = _vectors(y_true=y_true, y_pred=y_pred)
    return pred - true


# -- classification ---------------------------------------------------------------------------


def classification_metrics(
    y_true: ArrayLike, proba: ArrayLike, threshold: float
) -> dict[str, float]:
    """Alert quality at ``threshold`` plus threshold-free ranking quality.

    Keys: ``precision``, ``recall``, ``f1``, ``f2`` (recall weighted 2x: a missed failure costs far
    more than a needless inspection), ``roc_auc``, ``pr_auc`` (average precision), ``brier``, and
    the counts ``tp``, ``fp``, ``fn``, ``tn`` (as floats, so the dict is homogeneous). With one
    class present both AUCs are ``nan``; undefined ratios are ``nan``; nothing raises.
    """
    y = _binary(y_true)
    (p,) = _vectors(proba=proba)
    _same_length(y_true=y, proba=p)
    tp, fp, fn, tn = _confusion(y, p >= threshold)
    both_classes = 0 < tp + fn < y.size
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _fbeta(tp, fp, fn, 1.0),
        "f2": _fbeta(tp, fp, fn, 2.0),
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both_classes else math.nan,
        "brier": float(np.mean((p - y) ** 2)) if y.size else math.nan,
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
        "tn": float(tn),
    }


def expected_cost(
    y_true: ArrayLike,
    alert: ArrayLike,
    cost_missed: float = COST_MISSED,
    cost_false_alarm: float = COST_FALSE_ALARM,
) -> float:
    """Total cost of the alert decisions: ``fn * cost_missed + fp * cost_false_alarm``.

    A correct alert and a correct silence cost nothing here: the inspection a true alert triggers
    is cheaper than the failure it prevents and is the same whichever model raised it.
    """
    y, a = _binary(y_true), _binary(alert, name="alert")
    _same_length(y_true=y, alert=a)
    _, fp, fn, _ = _confusion(y, a.astype(bool))
    return float(fn * cost_missed + fp * cost_false_alarm)


def cost_per_asset(
    y_true: ArrayLike,
    alert: ArrayLike,
    cost_missed: float = COST_MISSED,
    cost_false_alarm: float = COST_FALSE_ALARM,
) -> float:
    """:func:`expected_cost` divided by the number of decisions (rows; ``nan`` if none).

    Each row is one asset's decision at one time, so this is the expected cost of one decision,
    comparable across evaluation sets of different sizes.
    """
    n = np.asarray(y_true).size
    return expected_cost(y_true, alert, cost_missed, cost_false_alarm) / n if n else math.nan


def _confusion(y: NDArray[np.int64], alert: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    pos = y == 1
    tp = int(np.count_nonzero(alert & pos))
    fp = int(np.count_nonzero(alert & ~pos))
    fn = int(np.count_nonzero(~alert & pos))
    return tp, fp, fn, y.size - tp - fp - fn


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _fbeta(tp: int, fp: int, fn: int, beta: float) -> float:
    # Count form of F-beta: defined (as 0) when there are positives but no alerts, where the
    # precision/recall form would divide by zero; nan only when there is nothing to score.
    b2 = beta * beta
    return _ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)


# -- intervals --------------------------------------------------------------------------------


def interval_coverage(y_true: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Fraction of rows with ``lower <= y_true <= upper`` (``nan`` for no rows).

    ``upper`` may be ``+inf``: an open interval ("more than ``lower``"), which covers any truth
    at or above its lower bound.
    """
    y, lo = _vectors(y_true=y_true, lower=lower)
    hi = _upper(upper, len(y))
    return float(np.mean((lo <= y) & (y <= hi))) if y.size else math.nan


def mean_interval_width(lower: ArrayLike, upper: ArrayLike) -> float:
    """Mean of ``upper - lower`` over closed intervals (``nan`` when none is closed).

    Coverage is only worth its width; open intervals (``upper = inf``) are counted by
    :func:`open_share` instead of making the mean infinite.
    """
    (lo,) = _vectors(lower=lower)
    hi = _upper(upper, len(lo))
    closed = np.isfinite(hi)
    return float(np.mean(hi[closed] - lo[closed])) if closed.any() else math.nan


def open_share(upper: ArrayLike) -> float:
    """Fraction of intervals open above (``upper = inf``): RUL reported as "more than L"."""
    hi = np.asarray(upper, dtype=np.float64)
    return float(np.mean(np.isposinf(hi))) if hi.size else math.nan


# -- slices -----------------------------------------------------------------------------------


def sliced_metrics(
    y_true_rul: ArrayLike,
    y_pred_rul: ArrayLike,
    y_true_failed: ArrayLike,
    proba: ArrayLike,
    threshold: float,
    slices: ArrayLike,
) -> pd.DataFrame:
    """Per-slice metrics (e.g. per operating regime) via ``fairlearn.metrics.MetricFrame``.

    One row per slice label, indexed by ``slice``, with columns ``n``, ``positives`` (rows that
    fail within the horizon: recall is only meaningful with enough of them), ``rmse``, ``mae``,
    ``recall``, ``precision``, ``f2``. A model that is good on average can still be blind in one
    regime; this is where that shows. Slices without positives get ``nan`` recall.
    """
    rul_true, rul_pred, p = _vectors(y_true_rul=y_true_rul, y_pred_rul=y_pred_rul, proba=proba)
    failed = _binary(y_true_failed, name="y_true_failed")
    labels = np.asarray(slices)
    _same_length(y_true_rul=rul_true, y_true_failed=failed, slices=labels)
    sensitive = pd.Series(labels, name="slice")

    regression: dict[str, Callable[..., Any]] = {
        "n": count,
        "rmse": lambda t, q: regression_metrics(t, q)["rmse"],
        "mae": lambda t, q: regression_metrics(t, q)["mae"],
    }
    classification: dict[str, Callable[..., Any]] = {
        "positives": lambda t, a: float(np.count_nonzero(np.asarray(t) == 1)),
        "recall": lambda t, a: _at(t, a, lambda tp, fp, fn: _ratio(tp, tp + fn)),
        "precision": lambda t, a: _at(t, a, lambda tp, fp, fn: _ratio(tp, tp + fp)),
        "f2": lambda t, a: _at(t, a, lambda tp, fp, fn: _fbeta(tp, fp, fn, 2.0)),
    }
    reg = MetricFrame(
        metrics=regression, y_true=rul_true, y_pred=rul_pred, sensitive_features=sensitive
    )
    clf = MetricFrame(
        metrics=classification,
        y_true=failed,
        y_pred=(p >= threshold).astype(np.int64),
        sensitive_features=sensitive,
    )
    frame = pd.concat([reg.by_group, clf.by_group], axis=1)
    frame = frame[["n", "positives", "rmse", "mae", "recall", "precision", "f2"]].astype("float64")
    return frame.astype({"n": "int64", "positives": "int64"})


def recall_gap_check(
    frame: pd.DataFrame, overall_recall: float, max_drop: float = 0.15, min_positives: int = 5
) -> list[str]:
    """Warnings for slices whose recall is more than ``max_drop`` (absolute) below the overall.

    ``frame`` is :func:`sliced_metrics` output. Slices with fewer than ``min_positives`` positives
    are skipped: with 2 failures one miss is a 50% drop, which is noise, not a finding. Empty list:
    no slice is left behind.
    """
    missing = {"recall", "positives"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks columns {sorted(missing)}: pass sliced_metrics() output")
    warnings: list[str] = []
    for label, row in frame.iterrows():
        recall, positives = float(row["recall"]), int(row["positives"])
        if positives < min_positives or math.isnan(recall):
            continue
        if recall < overall_recall - max_drop:
            warnings.append(
                f"slice {label!r}: recall {recall:.3f} is {overall_recall - recall:.3f} below the "
                f"overall {overall_recall:.3f} (allowed drop {max_drop:.3f}; "
                f"{positives} positives)"
            )
    return warnings


def _at(t: ArrayLike, a: ArrayLike, score: Callable[[int, int, int], float]) -> float:
    tp, fp, fn, _ = _confusion(np.asarray(t, dtype=np.int64), np.asarray(a).astype(bool))
    return score(tp, fp, fn)


# -- validation -------------------------------------------------------------------------------


def _vectors(**arrays: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    """Named inputs as equal-length finite 1-D float64 arrays (names make errors readable)."""
    out: list[NDArray[np.float64]] = []
    for name, values in arrays.items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} has non-finite values")
        out.append(arr)
    _same_length(**dict(zip(arrays, out, strict=True)))
    return tuple(out)


def _upper(values: ArrayLike, n: int) -> NDArray[np.float64]:
    """Upper bounds: finite or ``+inf`` (open), never NaN or ``-inf``; length ``n``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"upper must be 1-D of length {n}, got shape {arr.shape}")
    if np.isnan(arr).any() or np.isneginf(arr).any():
        raise ValueError("upper has NaN or -inf values")
    return arr


def _binary(values: ArrayLike, name: str = "y_true") -> NDArray[np.int64]:
    """0/1 (or bool) labels as int64; anything else raises."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.int64)
    if not np.all(np.isin(arr, (0, 1))):
        raise ValueError(f"{name} must hold only 0/1 labels")
    return arr.astype(np.int64)


def _same_length(**arrays: NDArray[Any]) -> None:
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"lengths differ: {lengths}")
