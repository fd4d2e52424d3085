"""The MILP: capacity and one visit per asset hold, it is optimal (against brute force), never
worse than riskiest-first, and its exact reductions lose nothing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from prognos.errors import PlanError
from prognos.planning import Costs, plan_fleet
from prognos.planning.distribution import failure_distributions
from prognos.planning.fleet import FleetRisk
from prognos.planning.plan import CostTable
from prognos.planning.schedule import candidates, optimal_plan
from tests.planning.conftest import random_predictions

COSTS = Costs(missed_failure=50_000.0, inspection=2_000.0)


def _table(rul: list[float], lower: list[float], upper: list[float], days: int) -> CostTable:
    return CostTable.build(failure_distributions(rul, lower, upper), days, COSTS)


def _brute_force(table: CostTable, crews: int) -> float:
    n, days = table.before.shape
    best = np.inf
    for choice in itertools.product(range(days + 1), repeat=n):
        day = np.array(choice, dtype=np.int64)
        if (np.bincount(day, minlength=days + 1)[1:] > crews).any():
            continue
        best = min(best, float(table.expected(day).sum()))
    return best


def test_optimum_matches_brute_force_on_a_tiny_fleet() -> None:
    # Five assets, one crew, three days: 5 > 3 slots, so the per-day reduction is at work.
    table = _table(
        [0.5, 1.5, 2.5, 8.0, 1.0], [0.0, 0.5, 1.0, 4.0, 0.0], [2.0, 3.0, 5.0, 14.0, 6.0], days=3
    )
    ids = tuple(f"a{i}" for i in range(5))
    plan = optimal_plan(table, ids, crews=1)
    assert plan.status == "optimal"
    assert plan.expected_cost == pytest.approx(_brute_force(table, 1))
    two = optimal_plan(table, ids, crews=2)
    assert two.expected_cost == pytest.approx(_brute_force(table, 2))
    assert two.expected_cost < plan.expected_cost  # a second crew is worth something here


def test_random_tiny_cases_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    for _ in range(15):
        n, days, crews = 5, int(rng.integers(1, 4)), int(rng.integers(1, 3))
        rul = rng.uniform(0.0, 6.0, n)
        lower = np.maximum(rul - rng.uniform(0.5, 3.0, n), 0.0)
        upper = rul + rng.uniform(0.5, 4.0, n)
        table = CostTable.build(failure_distributions(rul, lower, upper), days, COSTS)
        plan = optimal_plan(table, tuple(f"a{i}" for i in range(n)), crews)
        assert plan.expected_cost == pytest.approx(_brute_force(table, crews))


def test_capacity_and_one_visit_per_asset_hold() -> None:
    fleet = FleetRisk.from_frame(random_predictions(np.random.default_rng(0), 300))
    result = plan_fleet(fleet, crews=3, days=10, costs=COSTS)
    for plan in (result.plan, result.baseline):
        visits = [v.asset_id for v in plan.visits]
        assert len(visits) == len(set(visits))
        per_day = np.bincount([v.day for v in plan.visits], minlength=11)
        assert per_day.max() <= 3 and per_day[0] == 0
        assert all(1 <= v.day <= 10 for v in plan.visits)
    assert len(result.plan.visits) == 30  # capacity binds on this fleet: every slot is used
    assert result.plan.day_of.tolist().count(0) == 300 - 30


def test_never_worse_than_riskiest_first() -> None:
    rng = np.random.default_rng(7)
    strictly_better = 0
    for _ in range(25):
        n = int(rng.integers(5, 80))
        fleet = FleetRisk.from_frame(random_predictions(rng, n))
        crews, days = int(rng.integers(1, 4)), int(rng.integers(1, 15))
        result = plan_fleet(fleet, crews=crews, days=days, costs=COSTS)
        assert result.plan.expected_cost <= result.baseline.expected_cost + 1e-6
        assert result.plan.expected_cost <= result.plan.expected_cost_idle + 1e-6
        strictly_better += result.saving > 1.0
    assert strictly_better > 10  # the comparison is not vacuous


def test_every_visit_is_worth_its_cost() -> None:
    fleet = FleetRisk.from_frame(random_predictions(np.random.default_rng(2), 200))
    plan = plan_fleet(fleet, crews=200, days=5, costs=COSTS).plan  # capacity to spare
    assert all(v.expected_saving > 0 for v in plan.visits)
    # With spare capacity an asset worth visiting is visited on day 1 (earliest is cheapest).
    assert {v.day for v in plan.visits} == {1}


def test_the_reduction_keeps_every_pair_an_optimum_needs() -> None:
    rng = np.random.default_rng(5)
    gain = rng.normal(0.0, 1.0, (40, 4))
    assets, days = candidates(gain, crews=2)
    kept = np.zeros_like(gain, dtype=bool)
    kept[assets, days] = True
    assert not kept[gain <= 0].any()
    for d in range(4):  # the 8 (= 2 crews x 4 days) best positive gains of each day are kept
        top = np.argsort(-gain[:, d])[:8]
        assert kept[top[gain[top, d] > 0], d].all()
        assert kept[:, d].sum() <= 8


def test_bad_capacity_is_named() -> None:
    table = _table([3.0], [1.0], [6.0], days=2)
    with pytest.raises(PlanError, match="crews must be a whole number of at least 1"):
        optimal_plan(table, ("a0",), crews=0)
    with pytest.raises(PlanError, match="asset ids"):
        optimal_plan(table, ("a0", "a1"), crews=1)
    fleet = FleetRisk.from_frame(random_predictions(np.random.default_rng(0), 3))
    with pytest.raises(PlanError, match="days must be"):
        plan_fleet(fleet, crews=1, days=0)
