"""Riskiest-first: alerted assets in risk order, crews a day."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prognos.errors import PlanError
from prognos.planning.baseline import riskiest_first
from prognos.planning.distribution import failure_distributions
from prognos.planning.fleet import FleetRisk
from prognos.planning.plan import Costs, CostTable


def _fleet() -> FleetRisk:
    return FleetRisk.from_frame(
        pd.DataFrame(
            {
                "asset_id": ["a", "b", "c", "d", "e"],
                "rul": [20.0, 2.0, 9.0, 40.0, 5.0],
                "rul_lower": [10.0, 0.0, 4.0, 30.0, 1.0],
                "rul_upper": [30.0, 6.0, 15.0, np.nan, 9.0],
                "failure_probability": [0.9, 0.8, 0.7, 0.01, 0.6],
                "alert": [True, True, True, False, True],
            }
        )
    )


def _run(order: str, alerted_only: bool = True) -> dict[str, int]:
    fleet = _fleet()
    dists = failure_distributions(fleet.rul, fleet.lower, fleet.upper)
    table = CostTable.build(dists, 2, Costs(50_000.0, 2_000.0))
    plan = riskiest_first(fleet, dists, table, 1, order=order, alerted_only=alerted_only)  # type: ignore[arg-type]
    return {v.asset_id: v.day for v in plan.visits}


def test_by_probability_fills_days_in_rank_order() -> None:
    assert _run("probability") == {"a": 1, "b": 2}


def test_by_earliest_median_failure() -> None:
    assert _run("earliest") == {"b": 1, "e": 2}


def test_unalerted_assets_wait_unless_asked() -> None:
    fleet_days = _run("earliest", alerted_only=False)
    assert "d" not in fleet_days
    with pytest.raises(PlanError, match="risk order"):
        _run("loudest")
