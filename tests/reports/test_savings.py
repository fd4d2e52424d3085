"""The policies' arithmetic on lives small enough to price by hand (c_f 50,000, c_p 2,000)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prognos.errors import ConfigError
from prognos.reports.business import cv_lives
from prognos.reports.savings import (
    act_on_alerts,
    best_interval,
    fixed_interval,
    fixed_interval_cross_fitted,
    interval_rates,
    run_to_failure,
    savings,
)

CF, CP = 50_000.0, 2_000.0
LIVES = [100.0, 200.0]


def test_run_to_failure_charges_a_failure_per_life_over_the_whole_life() -> None:
    rtf = run_to_failure(LIVES, CF, CP)
    assert (rtf.failures, rtf.preventive_actions) == (2, 0)
    assert rtf.total_cost == 100_000
    assert rtf.cycles == rtf.life_cycles == 300
    assert rtf.cost_per_cycle == pytest.approx(100_000 / 300)
    assert rtf.cost_per_life == 50_000
    assert rtf.unused_life is None


def test_fixed_interval_acts_at_t_unless_the_failure_came_first() -> None:
    # T = 150: the 100-cycle life fails (50,000 over 100 cycles), the 200-cycle one is
    # maintained at 150 (2,000 over 150 cycles).
    at_150 = fixed_interval(LIVES, 150, CF, CP)
    assert (at_150.failures, at_150.preventive_actions) == (1, 1)
    assert at_150.cycles == 250
    assert at_150.cost_per_cycle == pytest.approx(52_000 / 250)
    assert at_150.unused_life == 50
    # A life of exactly T cycles fails at the end of cycle T: the action at T is too late.
    at_100 = fixed_interval(LIVES, 100, CF, CP)
    assert (at_100.failures, at_100.total_cost) == (1, 52_000)
    at_99 = fixed_interval(LIVES, 99, CF, CP)
    assert (at_99.failures, at_99.cycles) == (0, 198)


def test_the_best_interval_is_just_before_the_shortest_life_here() -> None:
    # T < 100: 4,000 / 2T, lowest at T = 99 (20.20 per cycle); 100 <= T < 200: 52,000 / (100 + T),
    # lowest at 199 (173.9); T = 200: run to failure (333.3).
    rates = interval_rates(LIVES, CF, CP)
    assert len(rates) == 200
    assert rates[98] == pytest.approx(4_000 / 198)
    assert rates[198] == pytest.approx(52_000 / 299)
    assert rates[199] == pytest.approx(100_000 / 300)
    assert best_interval(LIVES, CF, CP) == 99
    # A failure a bit dearer than an action still pays for acting at 199 (4,100 / 299 = 13.7
    # against 4,200 / 300 = 14.0); one cheaper than an action makes running to failure best.
    assert best_interval(LIVES, 2_100.0, 2_000.0) == 199
    assert best_interval(LIVES, 1_000.0, 2_000.0) == 200


def test_acting_on_alerts() -> None:
    acted = act_on_alerts(LIVES, [90, None], CF, CP)
    assert (acted.failures, acted.preventive_actions) == (1, 1)
    assert acted.cycles == 290 and acted.life_cycles == 300
    assert acted.total_cost == 52_000
    assert acted.cost_per_cycle == pytest.approx(52_000 / 290)
    assert acted.unused_life == 10
    # An alert at the failing cycle (RUL 0) is too late; one a cycle earlier is in time.
    late = act_on_alerts(LIVES, [100, 199], CF, CP)
    assert (late.failures, late.cycles) == (1, 299)
    assert act_on_alerts(LIVES, np.array([np.nan, np.nan]), CF, CP).failures == 2


def test_savings_per_cycle_per_asset_and_for_the_fleet() -> None:
    acted = act_on_alerts(LIVES, [90, None], CF, CP)
    rtf = run_to_failure(LIVES, CF, CP)
    gain = savings(acted, rtf)
    per_cycle = 100_000 / 300 - 52_000 / 290
    assert gain.per_cycle == pytest.approx(per_cycle)
    assert gain.cycles == 300
    assert gain.fleet_total == pytest.approx(per_cycle * 300)
    assert gain.per_asset == pytest.approx(per_cycle * 150)
    assert gain.share == pytest.approx(per_cycle / (100_000 / 300))
    # Against the best interval prognos loses here (it acted on one life of two).
    best = fixed_interval(LIVES, 99, CF, CP)
    assert savings(acted, best).per_cycle == pytest.approx(4_000 / 198 - 52_000 / 290)
    assert savings(acted, best).per_cycle < 0
    with pytest.raises(ValueError, match="different lives"):
        savings(acted, run_to_failure([100.0, 201.0], CF, CP))


def test_the_interval_is_chosen_on_the_other_folds_only() -> None:
    # Fold 0 holds short lives, fold 1 long ones. In-sample each fold would pick T = L - 1 for
    # itself; cross-fitted, fold 1 gets T = 9 (chosen on fold 0's lives) and acts needlessly
    # early, fold 0 gets T = 99 (chosen on fold 1's) and every one of its lives fails.
    lengths = [10.0, 10.0, 10.0, 100.0, 100.0, 100.0]
    folds = [0, 0, 0, 1, 1, 1]
    crossed = fixed_interval_cross_fitted(lengths, folds, CF, CP)
    assert crossed.interval_range == (9.0, 99.0)
    assert crossed.interval is None
    assert (crossed.failures, crossed.preventive_actions) == (3, 3)
    assert crossed.cycles == 3 * 10 + 3 * 9
    assert crossed.total_cost == 3 * CF + 3 * CP
    in_sample = fixed_interval(lengths, best_interval(lengths, CF, CP), CF, CP)
    assert in_sample.cost_per_cycle < crossed.cost_per_cycle


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_to_failure([0.0, 10.0], CF, CP)
    with pytest.raises(ValueError, match="non-empty"):
        run_to_failure([], CF, CP)
    with pytest.raises(ValueError, match="positive"):
        run_to_failure(LIVES, 0.0, CP)
    with pytest.raises(ValueError, match="differ"):
        act_on_alerts(LIVES, [1.0], CF, CP)
    with pytest.raises(ValueError, match="two folds"):
        fixed_interval_cross_fitted(LIVES, [0, 0], CF, CP)


def test_cross_validated_lives_from_out_of_fold_cuts() -> None:
    oof = pd.DataFrame(
        {
            "asset_id": [1, 1, 1, 2, 2, 3],
            "time": [50, 80, 95, 120, 150, 40],
            "rul": [50, 20, 5, 80, 50, np.inf],  # asset 3: a censored life
            "fold": [0, 0, 0, 1, 1, 1],
            "alert@ensemble": [0.0, 1.0, 1.0, 0.0, 0.0, 0.0],
        }
    )
    lives = cv_lives(oof, "alert@ensemble")
    assert lives.loc[1, "length"] == 100 and lives.loc[1, "alert_age"] == 80
    assert lives.loc[2, "length"] == 200 and np.isnan(lives.loc[2, "alert_age"])
    assert np.isnan(lives.loc[3, "length"])
    assert list(lives["fold"]) == [0, 1, 1]
    broken = oof.assign(rul=[50, 21, 5, 80, 50, 1])
    with pytest.raises(ConfigError, match="disagree"):
        cv_lives(broken, "alert@ensemble")
