"""Maintenance policies priced as renewal-reward cost rates: what acting on prognos is worth.

**Lives.** A life is one asset from new (age 1) to its failure at age ``L``: it operates cycles
1..L and fails at the end of cycle L (the labels' convention, :mod:`prognos.data.labels`: the last
reading of a run-to-failure trajectory has RUL 0). An action after the reading of age ``t``
prevents the failure only when ``t < L`` (an alert at RUL 0 is too late). After a failure or a
preventive action the asset is as good as new (a renewal): the next life starts.

**Costs** (the model's training configuration, ``costs`` in ``train_config.yaml``): a failure
costs ``c_f`` (missed failure: downtime, secondary damage, emergency repair; 50,000 by default),
a preventive action ``c_p`` (the needless-inspection cost, 2,000 by default, taken as the cost of
an inspection or planned repair).

**Policies**, each ending every life in a failure or a preventive action:

(a) *run-to-failure*: every life ends in a failure: cost ``c_f``, ``L`` cycles of operation.
(b) *fixed interval T*: preventive action at age ``T`` if the asset has not failed (``L > T``:
    cost ``c_p``, ``T`` cycles), else the failure (``c_f``, ``L`` cycles). ``T`` minimises the
    cost rate on *training* lives only (:func:`best_interval`, every integer age 1..max L);
    on cross-validation it is cross-fitted: each fold's lives get the T chosen on the others.
(c) *prognos*: act when the model's alert first fires at age ``a`` (its cost-optimal threshold):
    ``c_p`` and ``a`` cycles if ``a < L``, else the failure (``c_f``, ``L`` cycles).

**Why a cost rate.** Policies are compared by their long-run expected cost per cycle of
operation, ``sum(cost) / sum(cycles)`` over the lives (the renewal-reward theorem: the ratio of
expected cost to expected length of one life). A cost per life would reward throwing life away:
replacing every asset at age 1 costs ``c_p`` per life, the cheapest "life" of all, while the
fleet buys a new asset every cycle. The rate charges each policy for the useful life it discards.

**Against the training metric.** ``expected_cost`` in :mod:`prognos.training.metrics` prices
single decisions at cut points (``fn * c_miss + fp * c_fa``; a true alert costs nothing) to
compare models on the same rows. Here every life ends in a cost, a correct alert too (its
preventive action costs ``c_p``), and the lost remaining life is charged through the rate; the
figures are therefore in other units (per cycle of operation) and are not comparable with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict

PolicyName = Literal["run_to_failure", "fixed_interval", "prognos"]


class PolicyCost(BaseModel):
    """One policy applied to a set of lives."""

    model_config = ConfigDict(extra="forbid")

    policy: PolicyName
    lives: int
    failures: int
    preventive_actions: int
    cycles: float  # operating cycles under this policy, summed over the lives
    life_cycles: float  # the lives' full lengths summed (their run-to-failure operating time)
    total_cost: float
    cost_per_cycle: float  # the renewal-reward rate: total_cost / cycles
    cost_per_life: float  # total_cost / lives (for reference: not the comparison)
    unused_life: float | None = None  # mean cycles left at a preventive action
    interval: float | None = None  # T for the fixed-interval policy (a range when cross-fitted)
    interval_range: tuple[float, float] | None = None


class Savings(BaseModel):
    """What prognos saves against a baseline on the same lives.

    ``per_cycle`` is the difference of the cost rates; ``fleet_total`` prices it over the
    lives' operating time (``cycles``, the sum of their full lengths: what the fleet ran), and
    ``per_asset`` over one mean life of one asset; ``share`` is the saving as a fraction of the
    baseline's rate.
    """

    model_config = ConfigDict(extra="forbid")

    against: PolicyName
    per_cycle: float
    cycles: float
    fleet_total: float
    per_asset: float
    share: float


def _lives(lengths: ArrayLike) -> NDArray[np.float64]:
    values = np.asarray(lengths, dtype=np.float64)
    if values.ndim != 1 or not len(values):
        raise ValueError("need a non-empty 1-D array of life lengths")
    if not np.all(np.isfinite(values)) or np.any(values < 1):
        raise ValueError("life lengths must be finite and at least 1 cycle")
    return values


def _costs(c_f: float, c_p: float) -> None:
    if not (c_f > 0 and c_p > 0):
        raise ValueError("costs must be positive")


def _policy(
    policy: PolicyName,
    prevented: NDArray[np.bool_],
    cycles: NDArray[np.float64],
    lengths: NDArray[np.float64],
    c_f: float,
    c_p: float,
    interval: float | None = None,
    interval_range: tuple[float, float] | None = None,
) -> PolicyCost:
    n, actions = len(cycles), int(prevented.sum())
    total = float((n - actions) * c_f + actions * c_p)
    operated = float(cycles.sum())
    unused = float((lengths - cycles)[prevented].mean()) if actions else None
    return PolicyCost(
        policy=policy,
        lives=n,
        failures=n - actions,
        preventive_actions=actions,
        cycles=operated,
        life_cycles=float(lengths.sum()),
        total_cost=total,
        cost_per_cycle=total / operated,
        cost_per_life=total / n,
        unused_life=unused,
        interval=interval,
        interval_range=interval_range,
    )


def run_to_failure(lengths: ArrayLike, c_f: float, c_p: float) -> PolicyCost:
    """(a): every life ends in its failure."""
    _costs(c_f, c_p)
    life = _lives(lengths)
    return _policy("run_to_failure", np.zeros(len(life), dtype=bool), life, life, c_f, c_p)


def fixed_interval(lengths: ArrayLike, interval: float, c_f: float, c_p: float) -> PolicyCost:
    """(b) at a given ``interval`` T: action at age T unless the failure came first (L <= T)."""
    _costs(c_f, c_p)
    life = _lives(lengths)
    if not interval >= 1:
        raise ValueError(f"the interval must be at least 1 cycle, got {interval}")
    prevented = life > interval
    cycles = np.where(prevented, float(interval), life)
    return _policy("fixed_interval", prevented, cycles, life, c_f, c_p, interval=float(interval))


def interval_rates(lengths: ArrayLike, c_f: float, c_p: float) -> NDArray[np.float64]:
    """Cost rate of the fixed-interval policy at every T = 1..max L (index T - 1)."""
    _costs(c_f, c_p)
    life = _lives(lengths)
    t = np.arange(1, math.ceil(life.max()) + 1, dtype=np.float64)[:, None]
    failed = life[None, :] <= t
    cost = np.where(failed, c_f, c_p).sum(axis=1)
    cycles = np.minimum(life[None, :], t).sum(axis=1)
    return np.asarray(cost / cycles, dtype=np.float64)


def best_interval(lengths: ArrayLike, c_f: float, c_p: float) -> int:
    """The T in 1..max L with the lowest cost rate on ``lengths`` (the shortest on a tie).

    Between two consecutive life lengths the number of failures is constant while the cycles
    grow with T, so the optimum sits just before a life length; searching every integer age is
    simple, exact and cheap (max L values).
    """
    return int(np.argmin(interval_rates(lengths, c_f, c_p))) + 1


def fixed_interval_cross_fitted(
    lengths: ArrayLike, folds: ArrayLike, c_f: float, c_p: float
) -> PolicyCost:
    """(b) on cross-validation: each fold's lives under the T chosen on the other folds' lives."""
    _costs(c_f, c_p)
    life = _lives(lengths)
    fold = np.asarray(folds)
    if fold.shape != life.shape:
        raise ValueError("folds and lengths differ in length")
    chosen = np.zeros(len(life))
    for k in np.unique(fold):
        others = life[fold != k]
        if not len(others):
            raise ValueError("cross-fitting needs at least two folds")
        chosen[fold == k] = best_interval(others, c_f, c_p)
    prevented = life > chosen
    cycles = np.where(prevented, chosen, life)
    lo, hi = float(chosen.min()), float(chosen.max())
    return _policy(
        "fixed_interval",
        prevented,
        cycles,
        life,
        c_f,
        c_p,
        interval=lo if lo == hi else None,
        interval_range=(lo, hi),
    )


def act_on_alerts(
    lengths: ArrayLike, alert_ages: Sequence[float | None] | ArrayLike, c_f: float, c_p: float
) -> PolicyCost:
    """(c): act at the first alert's age ``a`` (None or NaN: never alerted); prevented iff a < L."""
    _costs(c_f, c_p)
    life = _lives(lengths)
    ages = np.array(
        [np.nan if a is None else float(a) for a in np.asarray(alert_ages, dtype=object)],
        dtype=np.float64,
    )
    if ages.shape != life.shape:
        raise ValueError("alert ages and lengths differ in length")
    prevented = np.isfinite(ages) & (ages < life)
    cycles = np.where(prevented, ages, life)
    return _policy("prognos", prevented, cycles, life, c_f, c_p)


def savings(prognos: PolicyCost, baseline: PolicyCost) -> Savings:
    """prognos against ``baseline`` on the same lives (positive: prognos costs less)."""
    if prognos.lives != baseline.lives or prognos.life_cycles != baseline.life_cycles:
        raise ValueError("policies priced on different lives")
    per_cycle = baseline.cost_per_cycle - prognos.cost_per_cycle
    cycles = prognos.life_cycles
    return Savings(
        against=baseline.policy,
        per_cycle=per_cycle,
        cycles=cycles,
        fleet_total=per_cycle * cycles,
        per_asset=per_cycle * cycles / prognos.lives,
        share=per_cycle / baseline.cost_per_cycle,
    )
