"""Which members a decision uses: the subset that does best out of fold, judged by the decision.

The RUL blend's weights minimise squared error and the probability stack's slopes minimise log
loss on the out-of-fold rows; both are the right *fits*, but neither says whether including a
member pays on new assets. On C-MAPSS FD001 (long-window features) the stack kept the network at
a positive slope because it lowered the log loss on the rows it was fitted on, and the ensemble's
cross-fitted expected cost came out at 216,000 against 174,000 for XGBoost alone. So each
candidate subset is itself cross-fitted over the out-of-fold rows' folds (fit on the other folds,
score the held-out one, the same protocol as the reported figures) and scored by what the
decision is judged on: expected cost of the alerts for the probability, squared error for the
RUL. The smallest subset within one standard error of the best (:func:`best_subset`) is
refitted on all rows; members outside it get weight and slope 0, so the
learned parameters say when a member is better alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from prognos.models.ensemble import LogitStack, blend, fit_weights_rul

# A candidate subset is scored on the held-out fold from parameters fitted on the other folds:
# one loss per held-out row.
Scorer = Callable[[pd.DataFrame, pd.DataFrame, list[str]], NDArray[np.float64]]


def best_subset(oof: pd.DataFrame, members: Sequence[str], score: Scorer) -> list[str]:
    """The smallest subset of ``members`` whose cross-fitted loss is not clearly above the best.

    Every non-empty subset is cross-fitted over ``oof``'s folds (``score(train, held_out,
    subset)`` gives one loss per held-out row). The subset with the lowest total wins unless a
    smaller one is within one standard error of it, the standard error of the paired per-row
    differences (the one-standard-error rule): the differences between strong members are often
    a row or two of a hundred out-of-fold rows, and a noisy win is not worth a member's serving
    time and the risk it carries to a new fleet. On FD002 (5,200 cut rows) choosing the
    lowest total alone dropped and kept the network on alternate folds and ended behind both
    the ensemble and XGBoost. ``oof`` needs a ``fold`` column; with fewer than two folds or one
    member every member is kept.
    """
    names = list(members)
    folds = np.unique(oof["fold"].to_numpy()) if "fold" in oof else np.zeros(0)
    if len(names) < 2 or folds.size < 2:
        return names
    fold_of = oof["fold"].to_numpy()
    subsets = [
        list(c) for size in range(1, len(names) + 1) for c in itertools.combinations(names, size)
    ]
    losses = []
    for subset in subsets:
        row_loss = np.empty(len(oof))
        for fold in folds:
            held = fold_of == fold
            row_loss[held] = score(oof[~held], oof[held], subset)
        losses.append(row_loss)
    totals = np.array([loss.sum() for loss in losses])
    best = int(np.argmin(totals))
    for i, subset in enumerate(subsets):  # smallest first: the first close enough wins
        if len(subset) >= len(subsets[best]):
            break
        diff = losses[i] - losses[best]
        if diff.sum() <= np.sqrt(len(diff)) * diff.std(ddof=1) + 1e-9 * abs(totals[best]):
            return subset
    return subsets[best]


def rul_loss(capped: str = "rul_capped") -> Scorer:
    """Squared error of the convex RUL blend against the capped target (what the blend fits)."""

    def score(train: pd.DataFrame, held: pd.DataFrame, subset: list[str]) -> NDArray[np.float64]:
        weights = fit_weights_rul(_columns(train, "rul", subset), train[capped].to_numpy())
        residual = blend(_columns(held, "rul", subset), weights) - held[capped].to_numpy()
        return np.asarray(residual**2, dtype=np.float64)

    return score


def alert_cost(threshold: float, cost_missed: float, cost_false_alarm: float) -> Scorer:
    """Cost of alerting at ``threshold`` on the stacked probability, per row."""

    def score(train: pd.DataFrame, held: pd.DataFrame, subset: list[str]) -> NDArray[np.float64]:
        stack = LogitStack().fit(_columns(train, "proba", subset), train["failed"].to_numpy())
        alert = stack.predict(_columns(held, "proba", subset)) >= threshold
        failed = held["failed"].to_numpy().astype(bool)
        return np.where(failed & ~alert, cost_missed, 0.0) + np.where(
            ~failed & alert, cost_false_alarm, 0.0
        )

    return score


def alert_loss(
    threshold: float, cost_missed: float, cost_false_alarm: float, spread: float = 2.0
) -> Scorer:
    """The alerts' cost, per row, averaged over thresholds around ``threshold``: what the stack's
    subset is chosen by.

    The thresholds lie log-evenly from ``threshold / spread`` to ``threshold * spread``; at
    threshold t a missed failure costs ``1 - t`` and a needless alert ``t`` (the costs for which t
    is the right threshold), scaled so that at ``threshold`` itself the row costs what
    :func:`alert_cost` charges. A mixture of such losses is a proper scoring rule (Schervish's
    representation) that judges the probabilities near where the decision is taken rather than
    only on which side of one threshold each row fell: there a single borderline row (a missed
    failure costs 25 needless alerts) decided the subset.

    Measured on five cross-validations (FD001 seeds 0-2, FD002 seeds 0-1; saved out-of-fold
    predictions re-scored, session 24), the ensemble's expected cost against its best member's:
    the one threshold +0, +62,000, -16,000, -100,000, -108,000; spread 2 +2,000 (one needless
    inspection), +0, -14,000, -140,000, +0; totals 1,954,000 and 1,964,000 against 2,116,000 for
    the best members. Wider spreads were worse (spread 5: 2,256,000, FD001 seed 2 142,000 above
    its best member), and so were log loss and the Brier score (all thresholds; session 23).
    """
    grid = threshold * np.geomspace(1.0 / spread, spread, 41)
    scale = cost_missed + cost_false_alarm

    def score(train: pd.DataFrame, held: pd.DataFrame, subset: list[str]) -> NDArray[np.float64]:
        stack = LogitStack().fit(_columns(train, "proba", subset), train["failed"].to_numpy())
        p = stack.predict(_columns(held, "proba", subset))[:, None]
        failed = held["failed"].to_numpy().astype(bool)[:, None]
        t = grid[None, :]
        loss = np.where(failed & (p < t), 1.0 - t, 0.0) + np.where(~failed & (p >= t), t, 0.0)
        return np.asarray(loss.mean(axis=1) * scale, dtype=np.float64)

    return score


def _columns(frame: pd.DataFrame, kind: str, subset: list[str]) -> dict[str, NDArray[np.float64]]:
    return {m: frame[f"{kind}__{m}"].to_numpy(dtype=np.float64) for m in subset}
