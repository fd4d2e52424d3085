"""The cost model every policy is judged by, and the typed plan they return.

Cost model (days ``d = 1..D``, crews ``N`` = inspections a day; ``F`` an asset's failure-time CDF
in days from now, :mod:`prognos.planning.distribution`):

- an inspection on day ``d`` happens at the start of that day, costs ``inspection`` (the
  needless-inspection cost of the training configuration, 2,000 by default) and averts the failure
  if it has not happened yet; with probability ``F(d - 1)`` it already has, which costs
  ``missed_failure`` (50,000 by default). Expected cost: ``inspection + F(d - 1) * missed``.
- an asset not inspected within the ``D`` days costs ``F(D) * missed``: failures after the horizon
  are the next plan's business (re-plan as predictions move), so they are not counted here.
- at most one inspection per asset in the horizon, at most ``N`` a day; skipping is allowed.

Inspecting on day ``d`` gains ``(F(D) - F(d - 1)) * missed - inspection`` over not inspecting:
worth it only while that is positive, and worth more the earlier it is. The repair that follows a
caught failure is paid in either case, so it drops out. Only the ratio of the two costs moves the
optimum; the totals are in the costs' currency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from prognos.errors import PlanError
from prognos.planning.distribution import FailureDistributions


@dataclass(frozen=True)
class Costs:
    """What a missed failure and an inspection cost (any currency, both > 0)."""

    missed_failure: float
    inspection: float

    def __post_init__(self) -> None:
        for name in ("missed_failure", "inspection"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise PlanError(f"cost {name} must be a positive number, got {value}")

    @classmethod
    def default(cls) -> Costs:
        """The training configuration's defaults (``costs`` in ``TrainConfig``)."""
        from prognos.training.metrics import COST_FALSE_ALARM, COST_MISSED

        return cls(missed_failure=COST_MISSED, inspection=COST_FALSE_ALARM)


def check_capacity(crews: int, days: int) -> None:
    """Raise :class:`PlanError` unless both are whole numbers of at least 1."""
    for name, value in (("crews", crews), ("days", days)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise PlanError(f"{name} must be a whole number of at least 1, got {value!r}")


@dataclass(frozen=True)
class CostTable:
    """The cost model evaluated for one fleet: ``before[a, d - 1] = F_a(d - 1)`` for ``d = 1..D``
    and ``within[a] = F_a(D)``."""

    before: NDArray[np.float64]
    within: NDArray[np.float64]
    costs: Costs

    @classmethod
    def build(cls, dists: FailureDistributions, days: int, costs: Costs) -> CostTable:
        cdf = dists.cdf(np.arange(days + 1, dtype=np.float64))
        return cls(before=cdf[:, :days], within=cdf[:, days], costs=costs)

    @property
    def days(self) -> int:
        return int(self.before.shape[1])

    def gain(self) -> NDArray[np.float64]:
        """Expected saving of inspecting asset ``a`` on day ``d`` over not inspecting it."""
        c = self.costs
        return (self.within[:, None] - self.before) * c.missed_failure - c.inspection

    def expected(self, day: NDArray[np.int64]) -> NDArray[np.float64]:
        """Each asset's expected cost under ``day`` (1..D, 0 = not inspected)."""
        c = self.costs
        n = day.size
        inspected = day > 0
        miss = self.within.copy()
        miss[inspected] = self.before[np.arange(n)[inspected], day[inspected] - 1]
        return miss * c.missed_failure + inspected * c.inspection

    def realised(self, day: NDArray[np.int64], failure_day: NDArray[np.float64]) -> float:
        """Total cost when the failures happen at ``failure_day`` (days from now; one column per
        scenario is averaged): a failure before the inspection, or within the horizon without
        one, is missed."""
        t = failure_day.reshape(day.size, -1)
        deadline = np.where(day > 0, day - 1, self.days).astype(np.float64)[:, None]
        missed = (t <= deadline).sum(axis=0)
        per_scenario = missed * self.costs.missed_failure + (day > 0).sum() * self.costs.inspection
        return float(per_scenario.mean())


@dataclass(frozen=True)
class Visit:
    """One scheduled inspection."""

    asset_id: str
    day: int
    failure_probability_before: float  # it fails before the crew comes: F(day - 1)
    failure_probability_horizon: float  # it fails within the D days if never inspected: F(D)
    expected_cost: float  # inspection + F(day - 1) * missed
    expected_saving: float  # F(D) * missed - expected_cost


@dataclass(frozen=True)
class Plan:
    """A schedule and what it is expected to cost. ``expected_cost`` = the visits' costs + the
    expected cost of the assets left out (``expected_cost_unvisited``); ``expected_cost_idle`` is
    what doing nothing would cost, for scale."""

    policy: str
    visits: tuple[Visit, ...]
    crews: int
    days: int
    n_assets: int
    costs: Costs
    expected_cost: float
    expected_cost_unvisited: float
    expected_cost_idle: float
    status: str
    seconds: float
    day_of: NDArray[np.int64]  # per asset, in input order: 1..D, 0 = not inspected

    @classmethod
    def from_days(
        cls,
        policy: str,
        day: NDArray[np.int64],
        table: CostTable,
        asset_ids: tuple[str, ...],
        *,
        crews: int,
        status: str,
        seconds: float,
    ) -> Plan:
        """Assemble the plan of assignment ``day``, checking it keeps the capacity."""
        per_day = np.bincount(day, minlength=table.days + 1)[1:]
        if per_day.size > table.days or (per_day > crews).any() or (day < 0).any():
            raise PlanError(f"{policy}: the schedule breaks the capacity of {crews} a day")
        cost = table.expected(day)
        idle = table.within * table.costs.missed_failure
        order = np.lexsort((np.asarray(asset_ids, dtype=object), day))
        visits = tuple(
            Visit(
                asset_id=asset_ids[a],
                day=int(day[a]),
                failure_probability_before=float(table.before[a, day[a] - 1]),
                failure_probability_horizon=float(table.within[a]),
                expected_cost=float(cost[a]),
                expected_saving=float(idle[a] - cost[a]),
            )
            for a in order
            if day[a] > 0
        )
        return cls(
            policy=policy,
            visits=visits,
            crews=crews,
            days=table.days,
            n_assets=day.size,
            costs=table.costs,
            expected_cost=float(cost.sum()),
            expected_cost_unvisited=float(cost[day == 0].sum()),
            expected_cost_idle=float(idle.sum()),
            status=status,
            seconds=seconds,
            day_of=day,
        )
