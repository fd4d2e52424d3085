"""The cost model, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from prognos.errors import PlanError
from prognos.planning.distribution import failure_distributions
from prognos.planning.plan import Costs, CostTable, Plan

COSTS = Costs(missed_failure=1_000.0, inspection=100.0)


def test_expected_cost_per_asset() -> None:
    # Asset 0: CDF linear from (0, 0) to (10, .05), (20, .5), (30, .95): F(10)=.05, F(20)=.5.
    table = CostTable.build(failure_distributions([20.0], [10.0], [30.0]), 20, COSTS)
    assert table.within[0] == pytest.approx(0.5)
    assert table.before[0, 10] == pytest.approx(0.05)  # day 11 starts at t = 10
    cost = table.expected(np.array([11]))
    assert cost[0] == pytest.approx(100.0 + 0.05 * 1_000.0)
    assert table.expected(np.array([0]))[0] == pytest.approx(0.5 * 1_000.0)
    assert table.gain()[0, 10] == pytest.approx((0.5 - 0.05) * 1_000.0 - 100.0)


def test_realised_cost_counts_misses_by_the_inspection_day() -> None:
    table = CostTable.build(failure_distributions([5.0] * 3, [1.0] * 3, [9.0] * 3), 10, COSTS)
    day = np.array([3, 0, 0])
    # Asset 0 fails at 1.5 < 2 (its inspection at the start of day 3): missed; asset 1 fails at
    # 12, after the horizon: not counted; asset 2 fails at 4 without a visit: missed.
    failures = np.array([1.5, 12.0, 4.0])
    assert table.realised(day, failures) == pytest.approx(2 * 1_000.0 + 100.0)
    scenarios = np.array([[1.5, 2.5], [12.0, 12.0], [4.0, 11.0]])  # mean of two scenarios
    assert table.realised(day, scenarios) == pytest.approx(100.0 + (2_000.0 + 0.0) / 2)


def test_a_plan_over_capacity_is_refused() -> None:
    table = CostTable.build(failure_distributions([5.0] * 3, [1.0] * 3, [9.0] * 3), 2, COSTS)
    with pytest.raises(PlanError, match="capacity"):
        Plan.from_days("x", np.array([1, 1, 0]), table, ("a", "b", "c"),
                       crews=1, status="s", seconds=0.0)  # fmt: skip
    with pytest.raises(PlanError, match="capacity"):
        Plan.from_days("x", np.array([3, 0, 0]), table, ("a", "b", "c"),
                       crews=1, status="s", seconds=0.0)  # fmt: skip


def test_costs_must_be_positive_and_default_to_the_training_config() -> None:
    with pytest.raises(PlanError, match="missed_failure"):
        Costs(missed_failure=0.0, inspection=1.0)
    with pytest.raises(PlanError, match="inspection"):
        Costs(missed_failure=1.0, inspection=float("nan"))
    from prognos.training.config import CostConfig

    config = CostConfig()
    assert Costs.default() == Costs(config.missed_failure, config.false_alarm)
