"""Blend members with weights learned on out-of-fold predictions.

A convex combination (weights >= 0, summing to 1) rather than a free stacker: with ~100 training
engines a meta-model would overfit, while simplex weights cannot extrapolate beyond the members,
keep the blend in the members' units (cycles, probabilities) and drop a useless member to ~0.
Weights must be learned on out-of-fold predictions: in-sample predictions favour the member that
memorised the training rows best.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize

__all__ = ["blend", "fit_weights_proba", "fit_weights_rul"]

_PROBA_EPS = 1e-6  # member probabilities are clipped into [eps, 1 - eps] so log loss is finite


def _stack(
    predictions: Mapping[str, ArrayLike], y_true: ArrayLike
) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64]]:
    """Names, (rows, members) prediction matrix and targets, checked for shape and finiteness."""
    if not predictions:
        raise ValueError("no member predictions to weight")
    names = list(predictions)
    y = np.asarray(y_true, dtype=np.float64).ravel()
    columns = []
    for name in names:
        column = np.asarray(predictions[name], dtype=np.float64).ravel()
        if column.shape != y.shape:
            raise ValueError(f"member {name!r} has {column.size} predictions for {y.size} targets")
        columns.append(column)
    matrix = np.column_stack(columns)
    if y.size == 0:
        raise ValueError("no rows to learn weights from")
    if not (np.isfinite(matrix).all() and np.isfinite(y).all()):
        raise ValueError("predictions and targets must be finite")
    return names, matrix, y


def _simplex_minimise(
    objective: Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]], k: int
) -> NDArray[np.float64]:
    """Minimise a convex objective (value, gradient) over the probability simplex with SLSQP.

    Starts from equal weights; the result is clipped at 0 and renormalised, removing the solver's
    tiny constraint violations so the weights are exactly a convex combination.
    """
    result = minimize(
        objective,
        np.full(k, 1.0 / k),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(k)}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    w = np.clip(np.asarray(result.x, dtype=np.float64), 0.0, None)
    w[w < 1e-9] = 0.0
    total = w.sum()
    return w / total if total > 0 else np.full(k, 1.0 / k)


def _as_dict(names: list[str], weights: NDArray[np.float64]) -> dict[str, float]:
    return {name: float(w) for name, w in zip(names, weights, strict=True)}


def fit_weights_rul(predictions: Mapping[str, ArrayLike], y_true: ArrayLike) -> dict[str, float]:
    """Convex weights minimising the squared error of the weighted-average RUL.

    Constrained least squares on the simplex, solved with SLSQP (convex, so the optimum is
    global). Plain NNLS would not impose the sum-to-1 constraint and could fix a member's bias
    by rescaling it, which does not carry over to new fleets. The objective is the squared error
    relative to that of the equal-weight blend, so the solver's tolerance means the same in any
    unit.
    """
    names, P, y = _stack(predictions, y_true)
    if len(names) == 1:
        return {names[0]: 1.0}
    start = P.mean(axis=1) - y
    baseline = float(start @ start)
    if baseline == 0.0:  # the equal-weight blend is exact: nothing to improve on
        return _as_dict(names, np.full(len(names), 1.0 / len(names)))
    scale = 1.0 / baseline

    def objective(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        residual = P @ w - y
        return float(residual @ residual) * scale, 2.0 * scale * (P.T @ residual)

    return _as_dict(names, _simplex_minimise(objective, len(names)))


def fit_weights_proba(predictions: Mapping[str, ArrayLike], y_true: ArrayLike) -> dict[str, float]:
    """Convex weights minimising the log loss of the weighted-average probability.

    Averaging probabilities (not logits) keeps the blend a probability and the loss convex in the
    weights, so SLSQP on the simplex finds the global optimum. Members are clipped into
    [1e-6, 1 - 1e-6] first: one confident mistake must not make the loss infinite.
    """
    names, P, y = _stack(predictions, y_true)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("failure labels must be 0 or 1")
    if len(names) == 1:
        return {names[0]: 1.0}
    P = np.clip(P, _PROBA_EPS, 1.0 - _PROBA_EPS)
    n = len(y)

    def objective(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        p = P @ w  # a convex combination of clipped probabilities stays inside (0, 1)
        loss = -float(np.sum(y * np.log(p) + (1.0 - y) * np.log1p(-p))) / n
        dp = (p - y) / (p * (1.0 - p))  # d loss / d p per row, times n
        return loss, (P.T @ dp) / n

    return _as_dict(names, _simplex_minimise(objective, len(names)))


def blend(
    predictions: Mapping[str, ArrayLike], weights: Mapping[str, float]
) -> NDArray[np.float64]:
    """Weighted average of member predictions.

    Members with weight 0 may be absent from ``predictions`` (a dropped member need not run);
    weights are divided by their sum, so unnormalised non-negative weights also give an average.
    """
    if any(w < 0 or not np.isfinite(w) for w in weights.values()):
        raise ValueError(f"weights must be finite and non-negative, got {dict(weights)}")
    used = {name: float(w) for name, w in weights.items() if w > 0}
    if not used:
        raise ValueError("all weights are zero: nothing to blend")
    missing = sorted(set(used) - set(predictions))
    if missing:
        raise ValueError(f"no predictions for weighted member(s) {missing}")
    total = sum(used.values())
    result: NDArray[np.float64] | None = None
    for name, w in used.items():
        column = np.asarray(predictions[name], dtype=np.float64)
        if result is not None and column.shape != result.shape:
            raise ValueError(f"member {name!r} predictions have shape {column.shape}")
        term = (w / total) * column
        result = term if result is None else result + term
    assert result is not None
    return result
