"""Which members a decision uses: the subset that does best out of fold, judged by the decision.

The RUL blend's weights minimise squared error and the probability stack's slopes minimise log
loss on the out-of-fold rows; both are the right *fits*, but neither says whether including a
member pays on new assets. On C-MAPSS FD001 (long-window features) the stack kept the network at
a positive slope because it lowered the log loss on the rows it was fitted on, and the ensemble's
cross-fitted expected cost came out at 216,000 against 174,000 for XGBoost alone. So each
candidate subset is itself cross-fitted over the out-of-fold rows' folds (fit on the other folds,
score the held-out one, the same protocol as the reported figures) and scored by what the
decision is judged on: expected cost of the alerts for the probability, squared error for the
RUL. A difference within one standard error is noise, and :func:`best_subset` lets it fall to
the fewest members for the RUL blend and to every member for the probability (below); the
chosen subset is refitted on all rows, members outside it get weight and slope 0, so the
learned parameters say when a member is better alone.

Why the probability keeps every member unless fewer are clearly better: the alerts' cost of a
few thousand cut rows turns on a handful of borderline rows (one missed failure costs as much as
25 needless inspections), so choosing the fewest members within the noise flipped between
members of near-equal cost fold by fold, and a fold that got the wrong one paid for it. On seven
cross-validations (FD001 seeds 0-3, FD002 seeds 0-2; saved out-of-fold predictions re-scored,
session 24) the ensemble's expected cost against its best member's was +0, +62,000, -16,000,
-100,000, -108,000, -4,000, +102,000 with the fewest members, and +2,000, +14,000, -70,000,
-150,000, -66,000, -54,000, -6,000 keeping every member within the noise (in total -64,000 and
-330,000); its Brier score was below the best member's on all seven (three with the fewest).
For the RUL blend both rules chose the same on all seven.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from prognos.models.ensemble import LogitStack, blend, fit_weights_rul

# A candidate subset is scored on the held-out fold from parameters fitted on the other folds:
# one loss per held-out row.
Scorer = Callable[[pd.DataFrame, pd.DataFrame, list[str]], NDArray[np.float64]]


def best_subset(
    oof: pd.DataFrame,
    members: Sequence[str],
    score: Scorer,
    prefer: Literal["fewest", "all"] = "fewest",
) -> list[str]:
    """The subset of ``members`` whose cross-fitted loss is best beyond the noise.

    Every non-empty subset is cross-fitted over ``oof``'s folds (``score(train, held_out,
    subset)`` gives one loss per held-out row), and the noise is one standard error of the
    paired per-row differences against the lowest total. ``prefer`` says where a difference
    within it falls: "fewest", the smallest subset within one standard error of the best (the
    one-standard-error rule: a noisy win is not worth a member's serving time and the risk it
    carries to a new fleet; on FD002 the lowest total alone dropped and kept the network on
    alternate folds); "all", every member unless the best subset beats them by more than one
    standard error (for the probability: see the module's note). ``oof`` needs a ``fold``
    column; with fewer than two folds or one member every member is kept.
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

    def within_noise(i: int) -> bool:
        diff = losses[i] - losses[best]
        return bool(diff.sum() <= np.sqrt(len(diff)) * diff.std(ddof=1) + 1e-9 * abs(totals[best]))

    if prefer == "all":
        return names if within_noise(len(subsets) - 1) else subsets[best]
    for i, subset in enumerate(subsets):  # smallest first: the first close enough wins
        if len(subset) >= len(subsets[best]):
            break
        if within_noise(i):
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


def _columns(frame: pd.DataFrame, kind: str, subset: list[str]) -> dict[str, NDArray[np.float64]]:
    return {m: frame[f"{kind}__{m}"].to_numpy(dtype=np.float64) for m in subset}
