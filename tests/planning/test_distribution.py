"""Failure-time distributions: they state exactly the quantiles the model states."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prognos.errors import PlanError
from prognos.planning.distribution import failure_distributions


def test_closed_interval_quantiles_and_median_are_matched() -> None:
    d = failure_distributions([40.0], [25.0], [70.0], coverage=0.9)
    cdf = d.cdf([0.0, 25.0, 40.0, 70.0])[0]
    assert cdf == pytest.approx([0.0, 0.05, 0.5, 0.95])
    # The tail goes on at the slope of the last segment: 0.45 over 30 cycles, 0.05 more in 10/3.
    assert d.cdf([70.0 + 10.0 / 3.0])[0, 0] == pytest.approx(1.0)
    assert d.cdf([72.0])[0, 0] < 1.0


def test_open_interval_knows_only_its_lower_tail() -> None:
    d = failure_distributions([110.0], [60.0], [math.nan], coverage=0.9)
    assert d.cdf([60.0, 110.0])[0] == pytest.approx([0.10, 0.5])  # one-sided: the whole 10%
    same = failure_distributions([110.0], [60.0], [math.inf], coverage=0.9)
    np.testing.assert_array_equal(d.knots_t, same.knots_t)


def test_a_zero_lower_end_is_an_atom_at_now() -> None:
    d = failure_distributions([3.0], [0.0], [12.0])
    assert d.cdf([-0.5, 0.0])[0] == pytest.approx([0.0, 0.05])
    samples = d.sample(np.random.default_rng(0), 20_000)[0]
    assert np.mean(samples == 0.0) == pytest.approx(0.05, abs=0.01)


def test_point_outside_its_interval_is_ignored_and_all_zero_fails_now() -> None:
    d = failure_distributions([80.0, 0.0], [20.0, 0.0], [60.0, 0.0])
    assert d.cdf([40.0])[0, 0] == pytest.approx(0.5)  # linear from (20, .05) to (60, .95)
    assert d.cdf([0.0])[1, 0] == 1.0


def test_time_per_day_converts_cycles_to_days() -> None:
    d = failure_distributions([40.0], [20.0], [60.0], time_per_day=4.0)
    assert d.cdf([5.0, 10.0, 15.0])[0] == pytest.approx([0.05, 0.5, 0.95])


def test_samples_follow_the_cdf() -> None:
    d = failure_distributions([30.0, 100.0], [10.0, 50.0], [55.0, math.nan])
    samples = d.sample(np.random.default_rng(1), 40_000)
    for t in (5.0, 20.0, 30.0, 50.0, 60.0, 110.0):
        empirical = np.mean(samples <= t, axis=1)
        np.testing.assert_allclose(empirical, d.cdf([t])[:, 0], atol=0.01)


@pytest.mark.parametrize(
    ("rul", "lower", "upper", "needle"),
    [
        ([math.nan], [1.0], [2.0], "RUL is missing"),
        ([-1.0], [0.0], [2.0], "RUL is missing, infinite or negative"),
        ([5.0], [math.nan], [9.0], "lower end"),
        ([5.0], [6.0], [4.0], "upper end is below"),
        ([5.0, 6.0], [4.0], [9.0], "differ in length"),
    ],
)
def test_bad_predictions_are_named(
    rul: list[float], lower: list[float], upper: list[float], needle: str
) -> None:
    with pytest.raises(PlanError, match=needle):
        failure_distributions(rul, lower, upper)


def test_bad_coverage_and_time_scale_are_named() -> None:
    with pytest.raises(PlanError, match="coverage"):
        failure_distributions([5.0], [1.0], [9.0], coverage=1.0)
    with pytest.raises(PlanError, match="time_per_day"):
        failure_distributions([5.0], [1.0], [9.0], time_per_day=0.0)
