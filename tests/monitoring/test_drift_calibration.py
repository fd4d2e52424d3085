"""The statistics under the drift engine, and the simulator drill in small."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from prognos.monitoring import change
from prognos.monitoring.drill import DrillConfig, Scenario, run_drill, summarise
from prognos.monitoring.stats import _along, psi, reference_props, score_batch


@pytest.mark.parametrize("n", [1, 7, 30, 100, 1000])
@pytest.mark.parametrize("alpha", [0.05, 1e-4])
def test_the_binomial_limit_is_the_smallest_count_with_a_small_enough_tail(
    n: int, alpha: float
) -> None:
    k = change.binomial_limit(n, alpha)
    assert binom.sf(k - 1, n, change.NULL_RATE) <= alpha * (1 + 1e-9)
    if k > 1:
        assert binom.sf(k - 2, n, change.NULL_RATE) > alpha


def test_psi_is_zero_for_equal_histograms_and_grows_with_a_shift() -> None:
    p = np.full((1, 10), 0.1)
    shifted = np.array([[0.0, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2]])
    n = np.array([1000.0])
    assert psi(p, p, n)[0] == pytest.approx(0.0)
    assert psi(shifted, p, n)[0] > 0.1


def test_the_reference_is_reweighted_to_the_batch_cell_mix() -> None:
    """Two cells with different histograms: a batch that is all cell 1 and looks exactly like
    cell 1 scores 0, however unlike the pooled reference it is."""
    reference = np.zeros((1, 2, 4))
    reference[0, 0] = [9000, 1000, 0, 0]
    reference[0, 1] = [0, 0, 1000, 9000]
    props = reference_props(reference, n_stages=2)  # two stages of one regime
    batch = np.zeros((1, 2, 4), dtype=np.int64)
    batch[0, 1] = [0, 0, 100, 900]
    assert score_batch(batch, props).score[0] < 0.01
    moved = np.zeros((1, 2, 4), dtype=np.int64)
    moved[0, 1] = [900, 100, 0, 0]
    assert score_batch(moved, props).score[0] > 1.0


def test_thresholds_interpolate_in_log_assets_and_never_rise_past_the_grid() -> None:
    grid = np.array([2.0, 8.0, 32.0])
    values = np.array([[0.8, 0.4, 0.2]])
    assert _along(grid, values, 4.0, slope=(-0.5, 0.0), log=True)[0] == pytest.approx(
        np.sqrt(0.8 * 0.4)
    )
    assert _along(grid, values, 1.0, slope=(-0.5, 0.0), log=True)[0] == pytest.approx(0.8)
    far = _along(grid, values, 128.0, slope=(-0.5, 0.0), log=True)[0]
    assert 0.0 < far <= 0.2


def test_half_differences_cancel_an_assets_offset_and_see_its_step() -> None:
    asset = np.repeat([0, 1], 40)
    position = np.tile(np.arange(40), 2)
    residual = np.zeros((80, 1))
    residual[:40, 0] = 5.0  # asset 0: a constant offset
    residual[40 + 20 :, 0] = 2.0  # asset 1: a step half way
    usable = np.ones_like(residual, dtype=bool)
    diff, _ = change.half_differences(asset, position, np.zeros(80, np.intp), residual, usable)
    assert diff[:, 0] == pytest.approx([0.0, 2.0])


@pytest.mark.slow
def test_the_drill_in_small_raises_no_false_alarm_and_finds_an_offset() -> None:
    config = DrillConfig(seeds=3, train_assets=40, live_assets=20, window=2_000, step=400)
    outcomes = run_drill([Scenario("aging"), Scenario("offset", 0.5)], config)
    table = summarise(outcomes).set_index("scenario")
    assert table.loc["aging", "false-alarm rate"] <= 0.1
    assert table.loc["offset 0.5", "detection rate"] == 1.0
    assert table.loc["offset 0.5", "median delay"] <= 2 * config.window
    # The naive comparison calls plain aging drift.
    assert table.loc["aging", "naive false-alarm rate"] >= 0.3
