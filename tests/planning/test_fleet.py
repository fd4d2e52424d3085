"""Predictions in: both sources, and bad tables named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prognos.errors import PlanError
from prognos.planning.fleet import FleetRisk


def _frame(**changes: object) -> pd.DataFrame:
    base = {
        "asset_id": ["a", "b"],
        "rul": [10.0, 90.0],
        "rul_lower": [4.0, 50.0],
        "rul_upper": [16.0, np.nan],
        "failure_probability": [0.7, 0.01],
        "alert": [True, False],
    }
    base.update(changes)  # type: ignore[arg-type]
    return pd.DataFrame(base)


def test_stored_rows_read_like_predict_output() -> None:
    stored = FleetRisk.from_records(
        [
            {"asset_id": "a", "rul": 10.0, "rul_lower": 4.0, "rul_upper": 16.0,
             "failure_probability": 0.7, "should_inspect": True, "extra": 1},
            {"asset_id": "b", "rul": 90.0, "rul_lower": 50.0, "rul_upper": None,
             "failure_probability": 0.01, "should_inspect": False},
        ]
    )  # fmt: skip
    fresh = FleetRisk.from_frame(_frame())
    assert stored.asset_ids == fresh.asset_ids
    np.testing.assert_array_equal(stored.upper, fresh.upper)  # None became NaN (open above)
    np.testing.assert_array_equal(stored.alert, fresh.alert)


def test_aging_moves_the_interval_down_and_keeps_it_open() -> None:
    aged = FleetRisk.from_frame(_frame()).aged(np.array([6.0, 60.0]))
    np.testing.assert_array_equal(aged.rul, [4.0, 30.0])
    np.testing.assert_array_equal(aged.lower, [0.0, 0.0])
    assert aged.upper[0] == 10.0 and np.isnan(aged.upper[1])


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"asset_id": ["a", "a"]}, "'a' has several"),
        ({"failure_probability": [0.5, 1.5]}, "asset 'b'"),
        ({"rul": ["x", "1"]}, "rul is not numeric"),
    ],
)
def test_bad_tables_are_named(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(PlanError, match=needle):
        FleetRisk.from_frame(_frame(**changes))


def test_missing_columns_are_named() -> None:
    with pytest.raises(PlanError, match="rul_lower"):
        FleetRisk.from_frame(_frame().drop(columns="rul_lower"))
