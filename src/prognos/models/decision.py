"""Turning model outputs into decisions: alert thresholds, calibrated probabilities, RUL intervals.

Everything here is fitted on a held-out calibration set (rows the members did not train on),
never on training rows: in-sample scores are optimistic, so thresholds and intervals learned on
them alert too little and cover too little.

Alert convention (shared with :mod:`prognos.training.metrics`): alert when ``proba >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import GroupKFold, StratifiedKFold

from prognos.errors import NotFittedError

_ROUNDING = 1e-9  # how far outside [0, 1] a probability may stray by float rounding
_EPS = 1e-6  # probabilities are clipped to [_EPS, 1 - _EPS] before logit and log loss
_PLATT_C = 100.0  # weak L2: keeps the slope finite on separable data, negligible otherwise
_PLATT_SOLVER = "newton-cholesky"  # exact Newton on 2 parameters; lbfgs is ~50x slower here

CalibrationMethod = Literal["auto", "platt", "isotonic", "identity"]
FittedMethod = Literal["platt", "isotonic", "identity"]


# -- thresholds -------------------------------------------------------------------------------


def cost_optimal_threshold(
    y_true: ArrayLike,
    proba: ArrayLike,
    cost_missed: float = 50_000.0,
    cost_false_alarm: float = 2_000.0,
) -> float:
    """The alert threshold with the lowest total cost ``fn * cost_missed + fp * cost_false_alarm``.

    Candidates are the distinct probabilities plus 0 and 1: the cost only changes at a score, so
    these are every distinct alert set (1 is "never alert" when no score reaches it). Costs of all
    candidates come from two sorted arrays and ``searchsorted`` (O(n log n), no loop). Ties go to
    the highest threshold: the same cost with fewer alerts means fewer people sent out for it.
    With the defaults (a miss costs 25 false alarms) it alerts far more eagerly than F2 does.
    """
    y, p = _labels_and_proba(y_true, proba)
    if cost_missed < 0 or cost_false_alarm < 0:
        raise ValueError("costs must be non-negative")
    candidates = np.unique(np.concatenate([p, [0.0, 1.0]]))  # ascending
    positives, negatives = np.sort(p[y == 1]), np.sort(p[y == 0])
    missed = np.searchsorted(positives, candidates, side="left")  # positives below the threshold
    alarms = negatives.size - np.searchsorted(negatives, candidates, side="left")  # at or above
    cost = missed * cost_missed + alarms * cost_false_alarm
    best = cost.min()
    # Costs are sums of two constants, so equal costs can differ by rounding only.
    tied = np.flatnonzero(cost <= best + 1e-9 * max(1.0, abs(best)))
    return float(candidates[tied[-1]])


def f2_optimal_threshold(y_true: ArrayLike, proba: ArrayLike) -> float:
    """The threshold maximising F2 (recall weighted 2x precision), via ``precision_recall_curve``.

    For when costs are not known. Ties go to the highest threshold (fewest alerts). Without any
    positive F2 is 0 everywhere and the answer is 1.0 (do not alert).
    """
    y, p = _labels_and_proba(y_true, proba)
    if not np.any(y == 1):
        return 1.0
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    den = 4.0 * precision + recall
    f2 = np.divide(5.0 * precision * recall, den, out=np.zeros_like(den), where=den > 0)
    best = len(f2) - 1 - int(np.argmax(f2[::-1]))  # thresholds ascend: last maximum = highest
    return float(thresholds[best])


# -- calibration ------------------------------------------------------------------------------


class Calibrator:
    """Maps raw failure scores to probabilities that mean what they say.

    Cost-optimal thresholds and the expected costs shown to users assume calibrated probabilities;
    boosted trees and networks trained with class weights are not. Methods:

    - ``platt``: logistic regression on ``logit(p)`` (2 parameters; can represent the identity, so
      it also covers already-calibrated scores); robust on little data.
    - ``isotonic``: monotone step function (``out_of_bounds="clip"``); fixes any monotone
      distortion but needs more data and can output exactly 0 or 1.
    - ``identity``: no change; also what ``fit`` learns when ``y`` has a single class.
    - ``auto``: platt vs isotonic by cross-validated ``criterion`` (``"log_loss"``, default, which
      punishes isotonic's confident 0/1 mistakes, or ``"brier"``) on out-of-fold predictions only,
      then refit the winner on all data. Pass ``groups`` (asset ids) to ``fit`` to use
      ``GroupKFold``: rows of one asset are near-duplicates, and splitting them across folds would
      reward isotonic for memorising assets. Without groups: ``StratifiedKFold``. With too little
      data for 2 folds, platt. Ties go to platt (fewer parameters).

    Learned: ``method_``, ``cv_scores_`` (auto only: method -> score on all out-of-fold rows),
    and the fitted map. Plain attributes and scikit-learn objects only, so it pickles.
    """

    def __init__(
        self,
        method: CalibrationMethod = "auto",
        *,
        criterion: Literal["log_loss", "brier"] = "log_loss",
        n_splits: int = 5,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.criterion = criterion
        self.n_splits = n_splits
        self.random_state = random_state

    def fit(self, proba: ArrayLike, y: ArrayLike, groups: ArrayLike | None = None) -> Self:
        if self.method not in ("auto", "platt", "isotonic", "identity"):
            raise ValueError(f"unknown calibration method {self.method!r}")
        if self.criterion not in ("log_loss", "brier"):
            raise ValueError(f"unknown criterion {self.criterion!r}")
        labels, p = _labels_and_proba(y, proba)
        self.cv_scores_: dict[str, float] = {}
        if np.unique(labels).size < 2:
            return self._fit_method("identity", p, labels)
        if self.method != "auto":
            return self._fit_method(self.method, p, labels)
        group_ids = None if groups is None else np.asarray(groups)
        if group_ids is not None and group_ids.shape != labels.shape:
            raise ValueError(f"groups has shape {group_ids.shape}, expected {labels.shape}")
        self.cv_scores_ = self._cross_validate(p, labels, group_ids)
        if not self.cv_scores_:
            return self._fit_method("platt", p, labels)
        methods: tuple[FittedMethod, FittedMethod] = ("platt", "isotonic")  # ties: platt
        winner = min(methods, key=lambda m: self.cv_scores_[m])
        return self._fit_method(winner, p, labels)

    def predict(self, proba: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probabilities, same shape as ``proba`` (1-D, values in [0, 1])."""
        if not hasattr(self, "method_"):
            raise NotFittedError("Calibrator is not fitted: call fit() first")
        p = _proba(proba)
        if self.method_ == "platt":
            z = self.coef_ * _logit(p) + self.intercept_
            return np.asarray(expit(z), dtype=np.float64)
        if self.method_ == "isotonic":
            return np.asarray(self.isotonic_.predict(p), dtype=np.float64)
        return p.copy()

    def _fit_method(
        self, method: FittedMethod, p: NDArray[np.float64], y: NDArray[np.int64]
    ) -> Self:
        if method == "platt":
            model = LogisticRegression(C=_PLATT_C, solver=_PLATT_SOLVER).fit(
                _logit(p).reshape(-1, 1), y
            )
            self.coef_ = float(model.coef_[0, 0])
            self.intercept_ = float(model.intercept_[0])
        elif method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            self.isotonic_ = iso.fit(p, y)
        self.method_: FittedMethod = method
        return self

    def _cross_validate(
        self, p: NDArray[np.float64], y: NDArray[np.int64], groups: NDArray[np.generic] | None
    ) -> dict[str, float]:
        """Mean out-of-fold score of platt and isotonic; empty when no 2-fold split exists."""
        if groups is not None:
            k = min(self.n_splits, np.unique(groups).size)
        else:
            k = min(self.n_splits, int(np.bincount(y, minlength=2).min()))
        if k < 2:
            return {}
        splitter: GroupKFold | StratifiedKFold = (
            GroupKFold(n_splits=k)
            if groups is not None
            else StratifiedKFold(n_splits=k, shuffle=True, random_state=self.random_state)
        )
        methods: tuple[FittedMethod, FittedMethod] = ("platt", "isotonic")
        oof = {m: np.full(p.size, np.nan) for m in methods}
        for train, valid in splitter.split(p.reshape(-1, 1), y, groups):
            if np.unique(y[train]).size < 2:
                continue  # a calibration map needs both classes; leave this fold unscored
            for method in methods:
                fitted = Calibrator(method)._fit_method(method, p[train], y[train])
                oof[method][valid] = fitted.predict(p[valid])
        scored = ~np.isnan(oof["platt"])
        if not scored.any():
            return {}
        return {m: _score(self.criterion, y[scored], pred[scored]) for m, pred in oof.items()}


def _score(criterion: str, y: NDArray[np.int64], p: NDArray[np.float64]) -> float:
    if criterion == "brier":
        return float(np.mean((p - y) ** 2))
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def _logit(p: NDArray[np.float64]) -> NDArray[np.float64]:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float64)


# -- RUL intervals ----------------------------------------------------------------------------


def conformal_width(y_true: ArrayLike, y_pred: ArrayLike, coverage: float = 0.9) -> float:
    """Split-conformal half-width: ``pred ± width`` covers a new row with probability >= coverage.

    ``width`` is the k-th smallest absolute residual on the calibration rows, k = ceil((n+1) *
    coverage): the finite-sample-correct quantile (valid for exchangeable rows, whatever the model).
    It is taken exactly as that order statistic: the common ``np.quantile(r, k/n,
    method="higher")`` indexes from (n-1)·k/n and so, for k < n, returns the (k+1)-th (too wide).
    When k > n the calibration set is too small to guarantee the coverage and the width is
    ``inf`` (the honest answer: use more calibration rows).
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    true, pred = _floats(y_true, "y_true"), _floats(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true {true.shape} and y_pred {pred.shape} differ in shape")
    n = true.size
    if n == 0:
        raise ValueError("no calibration rows")
    k = math.ceil((n + 1) * coverage - 1e-9)  # the epsilon undoes rounding like 0.9 * 10 = 9.0..1
    if k > n:
        return math.inf
    return float(np.partition(np.abs(true - pred), k - 1)[k - 1])


def conformal_min_rows(coverage: float) -> int:
    """Fewest calibration rows with a finite :func:`conformal_width` at ``coverage``.

    ``ceil((n+1)c) <= n`` holds exactly when ``n >= c / (1 - c)``: 9 rows for 90%, 19 for 95%.
    Callers that split data for calibration check this up front instead of meeting ``inf``.
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    return math.ceil(coverage / (1.0 - coverage) - 1e-9)


def conformal_interval(
    pred: ArrayLike, width: float | ArrayLike, lower_bound: float = 0.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(max(pred - width, lower_bound), pred + width)``: remaining life cannot be negative."""
    p = _floats(pred, "pred")
    w = np.asarray(width, dtype=np.float64)
    return np.maximum(p - w, lower_bound), p + w


class ConformalIntervals:
    """Mondrian split conformal: one :func:`conformal_width` per bin of *predicted* RUL.

    RUL errors grow with RUL (a healthy engine's end of life is far and vague, a degrading one's
    is near and visible), so one global width is too wide near failure, where decisions are made,
    and too narrow far from it. Each bin gets its own finite-sample-correct width, so coverage
    holds within every bin and hence overall. Bins are on the prediction because that is all
    there is at serving time.

    ``fit(..., bins=4)``: an int asks for that many quantile bins of ``y_pred``; a sequence gives
    the inner edges (``[25, 50]``: below 25, 25 to 50, 50 and above). A bin with fewer than
    ``max(min_bin_size, rows needed for a finite width)`` rows is merged into its smaller
    neighbour, repeatedly; so small data degrade to one global width. Learned: ``edges_`` (inner
    edges), ``widths_`` and ``counts_`` per bin, ``coverage_`` and ``mean_width_`` (on the
    calibration rows; the guarantee is for new rows). Assumes rows are exchangeable: calibrate on
    assets the model did not train on.
    """

    def __init__(
        self, coverage: float = 0.9, *, min_bin_size: int = 50, lower_bound: float = 0.0
    ) -> None:
        self.coverage = coverage
        self.min_bin_size = min_bin_size
        self.lower_bound = lower_bound

    def fit(self, y_true: ArrayLike, y_pred: ArrayLike, bins: int | Sequence[float] = 4) -> Self:
        if not 0.0 < self.coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {self.coverage}")
        true, pred = _floats(y_true, "y_true"), _floats(y_pred, "y_pred")
        if true.shape != pred.shape or true.size == 0:
            raise ValueError(f"need equal, non-empty y_true {true.shape} and y_pred {pred.shape}")
        if isinstance(bins, int):
            if bins < 1:
                raise ValueError(f"bins must be >= 1, got {bins}")
            edges = np.unique(np.quantile(pred, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        else:
            edges = np.unique(np.asarray(bins, dtype=np.float64))
        needed = max(self.min_bin_size, conformal_min_rows(self.coverage))
        edges = _merge_small_bins(edges, pred, needed)
        which = np.searchsorted(edges, pred, side="right")
        self.edges_ = edges
        self.counts_ = np.bincount(which, minlength=edges.size + 1)
        self.widths_ = np.array(
            [
                conformal_width(true[which == b], pred[which == b], self.coverage)
                for b in range(edges.size + 1)
            ]
        )
        lower, upper = self.interval(pred)
        self.coverage_ = float(np.mean((lower <= true) & (true <= upper)))
        self.mean_width_ = float(np.mean(upper - lower))
        return self

    def width(self, pred: ArrayLike) -> NDArray[np.float64]:
        """Half-width for each prediction (its bin's)."""
        if not hasattr(self, "widths_"):
            raise NotFittedError("ConformalIntervals is not fitted: call fit() first")
        p = _floats(pred, "pred")
        return np.asarray(self.widths_[np.searchsorted(self.edges_, p, side="right")])

    def interval(self, pred: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(lower, upper)`` per prediction, lower clipped at ``lower_bound``."""
        return conformal_interval(pred, self.width(pred), self.lower_bound)


def _merge_small_bins(
    edges: NDArray[np.float64], pred: NDArray[np.float64], needed: int
) -> NDArray[np.float64]:
    """Drop inner edges until every bin has ``needed`` rows (or one bin is left); few iterations."""
    while edges.size:
        counts = np.bincount(np.searchsorted(edges, pred, side="right"), minlength=edges.size + 1)
        small = int(np.argmin(counts))
        if counts[small] >= needed:
            break
        if small == 0:
            drop = 0
        elif small == counts.size - 1:
            drop = small - 1
        else:  # merge into the smaller neighbour, keeping bins as even as possible
            drop = small - 1 if counts[small - 1] <= counts[small + 1] else small
        edges = np.delete(edges, drop)
    return edges


# -- validation -------------------------------------------------------------------------------


def _floats(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values")
    return arr


def _proba(values: ArrayLike) -> NDArray[np.float64]:
    """Probabilities in [0, 1]; rounding excursions (a blend of weights summing to 1 + 1e-16) are
    clipped, anything further out is a bug upstream and raises."""
    p = _floats(values, "proba")
    if p.size and (p.min() < -_ROUNDING or p.max() > 1.0 + _ROUNDING):
        raise ValueError("proba must lie in [0, 1]")
    return np.clip(p, 0.0, 1.0)


def _labels_and_proba(
    y_true: ArrayLike, proba: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    y = np.asarray(y_true)
    if y.dtype != np.bool_ and not np.all(np.isin(y, (0, 1))):
        raise ValueError("labels must hold only 0/1")
    labels = y.astype(np.int64)
    p = _proba(proba)
    if labels.shape != p.shape:
        raise ValueError(f"labels {labels.shape} and proba {p.shape} differ in shape")
    return labels, p
