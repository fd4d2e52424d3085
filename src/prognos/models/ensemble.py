"""Blend members with weights learned on out-of-fold predictions.

RUL: a convex combination (weights >= 0, summing to 1) rather than a free stacker: with ~100
training engines a meta-model would overfit, while simplex weights cannot extrapolate beyond the
members, keep the blend in cycles and drop a useless member to ~0. Failure probability: the
members' log-odds stacked with non-negative slopes, which calibrates at the same time
(:class:`LogitStack`). Both must be learned on out-of-fold predictions: in-sample predictions
favour the member that memorised the training rows best.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from prognos.errors import NotFittedError

__all__ = ["LogitStack", "blend", "fit_weights_rul", "member_logits"]


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


# Member probabilities are turned into log-odds after clipping into [eps, 1 - eps]: a tree's
# float32 probability of exactly 1.0 must give a finite logit (|logit| <= 16.1 at this eps).
_LOGIT_EPS = 1e-7
# Weak L2 on the slopes (scaled by the row count): keeps them finite on separable folds.
_STACK_L2 = 1e-4


def member_logits(proba: Mapping[str, ArrayLike]) -> dict[str, NDArray[np.float64]]:
    """Each member's probability as log-odds (clipped into ``[eps, 1 - eps]`` first)."""
    out = {}
    for name, values in proba.items():
        p = np.clip(np.asarray(values, dtype=np.float64), _LOGIT_EPS, 1.0 - _LOGIT_EPS)
        out[name] = np.log(p) - np.log1p(-p)
    return out


class LogitStack:
    """Blend and calibrate failure probabilities in one step: ``sigmoid(b + sum_m c_m logit_m)``.

    Why not a weighted average of probabilities followed by a calibrator (the earlier design):
    in log-odds the members' evidence adds, each scaled by how much it is worth, and the slopes
    ``c_m >= 0`` are Platt scaling at the same time, so one fit of a few parameters replaces
    weights plus calibrator, and a member that adds nothing gets ``c_m = 0``. A member that
    lowers the log loss of the rows it is fitted on but not the cost on new ones still gets a
    slope: :mod:`prognos.models.selection` decides which members the stack sees. Cross-fitted on
    FD001 (5 cuts, the same alert rule) it missed as many failures as the earlier blend with two
    fewer false alarms (expected cost 102,000 against 106,000); most of the earlier blend's gap
    to the network alone (136,000 against 76,000) was the alert threshold (see
    ``decision.bayes_threshold``).

    The served log-odds are affine in each member's log-odds, so an additive explanation of
    each member (TreeSHAP, DeepLift) scaled by ``c_m`` adds up to the served log-odds exactly:
    see :meth:`decision_function` and :mod:`prognos.models.explain`.

    Learned: ``coef_`` (member -> slope >= 0), ``intercept_``.
    """

    def fit(self, proba: Mapping[str, ArrayLike], y: ArrayLike) -> Self:
        names, P, target = _stack(proba, y)
        if not np.isin(target, (0.0, 1.0)).all():
            raise ValueError("failure labels must be 0 or 1")
        Z = np.column_stack([member_logits({n: P[:, i]})[n] for i, n in enumerate(names)])
        k, n = len(names), len(target)
        if np.unique(target).size < 2:
            # One class: no slope can be learned; average the members, intercept at the rate.
            rate = np.clip(target.mean(), _LOGIT_EPS, 1 - _LOGIT_EPS)
            self.coef_ = dict.fromkeys(names, 0.0)
            self.intercept_ = float(np.log(rate) - np.log1p(-rate))
            return self
        sign = 2.0 * target - 1.0

        def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            margin = theta[0] + Z @ theta[1:]
            loss = -float(np.sum(log_expit(sign * margin))) / n
            residual = (expit(margin) - target) / n
            slopes = theta[1:]
            loss += 0.5 * _STACK_L2 * float(slopes @ slopes)
            grad = np.concatenate([[residual.sum()], Z.T @ residual + _STACK_L2 * slopes])
            return loss, grad

        start = np.concatenate([[0.0], np.full(k, 1.0 / k)])
        result = minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=[(None, None)] + [(0.0, None)] * k,
            options={"maxiter": 1000},
        )
        theta = np.asarray(result.x, dtype=np.float64)
        self.intercept_ = float(theta[0])
        self.coef_ = {name: float(max(c, 0.0)) for name, c in zip(names, theta[1:], strict=True)}
        return self

    def decision_function(self, proba: Mapping[str, ArrayLike]) -> NDArray[np.float64]:
        """Served log-odds: ``intercept_ + sum_m coef_[m] * logit(proba[m])``.

        Members with slope 0 may be absent from ``proba``.
        """
        if not hasattr(self, "coef_"):
            raise NotFittedError("LogitStack is not fitted: call fit() first")
        used = {m: c for m, c in self.coef_.items() if c > 0}
        missing = sorted(set(used) - set(proba))
        if missing:
            raise ValueError(f"no predictions for weighted member(s) {missing}")
        logits = member_logits({m: proba[m] for m in used})
        sizes = {np.asarray(v).shape for v in logits.values()}
        if len(sizes) > 1:
            raise ValueError(f"member predictions differ in shape: {sizes}")
        out: NDArray[np.float64] | float = self.intercept_
        for m, c in used.items():
            out = out + c * logits[m]
        if isinstance(out, float):  # every slope is 0: the base rate for each row
            n = len(np.asarray(next(iter(proba.values())))) if proba else 0
            return np.full(n, out)
        return np.asarray(out, dtype=np.float64)

    def predict(self, proba: Mapping[str, ArrayLike]) -> NDArray[np.float64]:
        """Blended, calibrated probability of failure within H."""
        return np.asarray(expit(self.decision_function(proba)), dtype=np.float64)
