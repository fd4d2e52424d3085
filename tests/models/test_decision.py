"""Decision rules: thresholds enumerated by hand, calibration, conformal intervals."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from prognos.errors import NotFittedError
from prognos.models.decision import (
    ConformalIntervals,
    bayes_threshold,
    conformal_min_rows,
    conformal_quantile,
    f2_optimal_threshold,
)
from prognos.training.metrics import classification_metrics, expected_cost

# -- thresholds -------------------------------------------------------------------------------


def test_bayes_threshold_minimises_expected_cost_of_calibrated_probabilities() -> None:
    """For calibrated p, alerting costs (1 - p) * false alarm and waiting p * miss: the cheaper
    side switches at c_fa / (c_fa + c_miss). Checked against the realised cost on draws."""
    assert bayes_threshold() == pytest.approx(2_000 / 52_000)
    assert bayes_threshold(1.0, 1.0) == 0.5
    rng = np.random.default_rng(4)
    p = rng.beta(0.3, 2.0, 200_000)
    y = (rng.uniform(size=p.size) < p).astype(np.int64)
    t = bayes_threshold(50_000.0, 2_000.0)
    at_bayes = expected_cost(y, p >= t, 50_000.0, 2_000.0)
    for other in (t / 2, t * 2, 0.2, 0.5):
        assert at_bayes < expected_cost(y, p >= other, 50_000.0, 2_000.0)
    with pytest.raises(ValueError, match="positive"):
        bayes_threshold(0.0, 1.0)


def test_f2_threshold_by_hand() -> None:
    # positives at 0.9 and 0.1; ten negatives at 0.2, 0.25, ..., 0.65.
    # threshold  alerts          fn fp   F2 = 5tp / (5tp + 4fn + fp)
    # 0.9        pos 0.9         1  0    5 / 9  = 0.556  <- F2 optimum
    # 0.65..0.2  + k negatives   1  k    5 / (9 + k) < 5/9
    # 0.1        everything      0  10   10 / 20 = 0.5
    y = np.array([1, 1] + [0] * 10)
    p = np.array([0.9, 0.1, *np.linspace(0.2, 0.65, 10)])
    assert f2_optimal_threshold(y, p) == pytest.approx(0.9)
    assert classification_metrics(y, p, 0.9)["f2"] == pytest.approx(5 / 9)


def test_f2_optimal_threshold_matches_brute_force_and_degenerate_case() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.25 * y + rng.uniform(0, 0.75, 200), 0, 1)

    def f2(threshold: float) -> float:
        alert = p >= threshold
        tp, fp = np.sum(alert & (y == 1)), np.sum(alert & (y == 0))
        fn = np.sum(~alert & (y == 1))
        return float(5 * tp / (5 * tp + 4 * fn + fp))

    t = f2_optimal_threshold(y, p)
    assert f2(t) == pytest.approx(max(f2(c) for c in np.unique(p)))
    assert f2(t) == pytest.approx(classification_metrics(y, p, t)["f2"])
    assert f2_optimal_threshold([0, 0], [0.3, 0.7]) == 1.0


def test_threshold_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="0/1"):
        f2_optimal_threshold([0, 3], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        f2_optimal_threshold([0, 1], [0.1, 1.2])
    # float rounding just past 1 (a weighted blend) is tolerated
    assert f2_optimal_threshold([0, 1], [0.1, 1.0 + 1e-15]) == 1.0


# -- conformal intervals ----------------------------------------------------------------------


def test_conformal_quantile_on_known_scores() -> None:
    scores = np.arange(1.0, 20.0)  # n = 19
    # k = ceil((19 + 1) * 0.9) = 18 -> the 18th smallest, 18
    assert conformal_quantile(scores, 0.9) == 18.0
    # n = 10: k = ceil(11 * 0.9) = ceil(9.9) = 10 -> the largest
    assert conformal_quantile(np.arange(1.0, 11.0), 0.9) == 10.0
    # n = 9: k = ceil(10 * 0.9) = 9 (not 10: 10 * 0.9 rounds to 9.000...1)
    assert conformal_quantile(np.arange(1.0, 10.0), 0.9) == 9.0
    # n = 5: k = ceil(5.4) = 6 > 5: no finite quantile guarantees 90%
    assert conformal_quantile(np.arange(1.0, 6.0), 0.9) == math.inf
    assert conformal_min_rows(0.9) == 9 and conformal_min_rows(0.95) == 19
    with pytest.raises(ValueError, match="level"):
        conformal_quantile(scores, 1.0)


def test_conformal_coverage_on_fresh_draws() -> None:
    rng = np.random.default_rng(11)
    # many small calibration sets: average coverage is k/(n+1) = 181/201 ~ 0.9005
    reps, n_cal, n_test = 300, 200, 2_000
    covered = []
    for _ in range(reps):
        width = conformal_quantile(np.abs(rng.standard_t(3, n_cal)), 0.9)
        covered.append(np.mean(np.abs(rng.standard_t(3, n_test)) <= width))
    assert 0.88 <= float(np.mean(covered)) <= 0.93
    # one large calibration set, a large fresh sample
    width = conformal_quantile(np.abs(rng.standard_t(3, 5_000)), 0.9)
    assert 0.88 <= float(np.mean(np.abs(rng.standard_t(3, 200_000)) <= width)) <= 0.93


def _heteroscedastic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pred = rng.uniform(0.0, 125.0, n)
    # error grows with RUL; true RUL is never negative
    return np.maximum(pred + rng.normal(0.0, 1.0 + 0.2 * pred), 0.0), pred


def _covered(lower: np.ndarray, upper: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (lower <= y) & (y <= upper)


def test_conformal_intervals_adapt_to_rul_and_keep_coverage() -> None:
    rng = np.random.default_rng(5)
    y_cal, pred_cal = _heteroscedastic(5_000, rng)
    ci = ConformalIntervals(0.9).fit(y_cal, pred_cal, bins=4)
    assert ci.edges_.size == 3
    assert np.all(np.diff(ci.widths_) > 0)  # wider where RUL is larger
    assert ci.coverage_ >= 0.9
    assert ci.open_share_ == 0.0  # no cap given: never open

    y_new, pred_new = _heteroscedastic(100_000, rng)
    lower, upper = ci.interval(pred_new)
    inside = _covered(lower, upper, y_new)
    assert 0.88 <= inside.mean() <= 0.93
    assert np.all(lower >= 0.0)
    # near failure (lowest bin) one global width over-covers, the binned one does not
    near = pred_new < ci.edges_[0]
    global_width = conformal_quantile(np.abs(y_cal - pred_cal), 0.9)
    assert np.mean(np.abs(y_new - pred_new)[near] <= global_width) > 0.97
    assert 0.87 <= inside[near].mean() <= 0.94
    assert ci.mean_width_ < 2 * global_width

    clone = pickle.loads(pickle.dumps(ci))
    np.testing.assert_array_equal(clone.interval(pred_new[:10])[1], upper[:10])


def _capped_model(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A model trained on RUL capped at 125: it tracks the truth below the cap and says ~125
    for every asset above it, however far (like C-MAPSS engines early in life)."""
    truth = rng.uniform(0.0, 250.0, n)
    pred = np.minimum(truth, 125.0) + rng.normal(0.0, 4.0 + 0.1 * np.minimum(truth, 125.0), n)
    return truth, np.maximum(pred, 0.0)


def test_intervals_calibrated_on_the_capped_target_miss_the_true_rul() -> None:
    """The fault the open interval fixes: calibrated against the capped target, the interval
    covers the capped truth but not the true RUL of assets far from failure."""
    rng = np.random.default_rng(8)
    truth, pred = _capped_model(4_000, rng)
    capped = ConformalIntervals(0.9).fit(np.minimum(truth, 125.0), pred)
    truth_new, pred_new = _capped_model(50_000, rng)
    lower, upper = capped.interval(pred_new)
    assert _covered(lower, upper, np.minimum(truth_new, 125.0)).mean() >= 0.88
    assert _covered(lower, upper, truth_new).mean() < 0.7


def test_intervals_open_above_the_cap_cover_the_true_rul_in_every_band() -> None:
    rng = np.random.default_rng(9)
    truth, pred = _capped_model(4_000, rng)
    ci = ConformalIntervals(0.9, open_from=125.0).fit(truth, pred, bins=6)
    truth_new, pred_new = _capped_model(100_000, rng)
    lower, upper = ci.interval(pred_new)
    is_open = np.isposinf(upper)
    # Open exactly where the closed interval would have reached the cap.
    assert 0.3 < is_open.mean() < 0.8
    assert np.all(np.isfinite(upper[~is_open]) & (upper[~is_open] < 125.0))
    assert np.all(lower[is_open] < pred_new[is_open])
    inside = _covered(lower, upper, truth_new)
    assert 0.88 <= inside.mean() <= 0.94
    for band in range(ci.edges_.size + 1):
        rows = np.searchsorted(ci.edges_, pred_new, side="right") == band
        assert inside[rows].mean() >= 0.87, band
    # An open interval is a one-sided bound at the full coverage: tighter than half of it.
    assert np.all(ci.open_lower_ <= ci.lower_)
    assert 0.88 <= inside[is_open].mean() <= 0.94


def test_conformal_intervals_merge_small_bins_and_accept_edges() -> None:
    rng = np.random.default_rng(6)
    y, pred = _heteroscedastic(120, rng)
    merged = ConformalIntervals(0.9, min_bin_size=50).fit(y, pred, bins=4)
    assert merged.counts_.min() >= 50
    assert merged.counts_.sum() == 120
    assert merged.edges_.size <= 1

    one = ConformalIntervals(0.9, min_bin_size=1_000).fit(y, pred, bins=4)
    assert one.edges_.size == 0
    # two one-sided offsets, each at 95%
    assert one.lower_[0] == conformal_quantile(pred - y, 0.95)
    assert one.upper_[0] == conformal_quantile(y - pred, 0.95)

    y, pred = _heteroscedastic(2_000, rng)
    explicit = ConformalIntervals(0.9).fit(y, pred, bins=[30.0, 90.0])
    np.testing.assert_array_equal(explicit.edges_, [30.0, 90.0])
    np.testing.assert_array_equal(explicit.width([10.0, 60.0, 200.0]), explicit.widths_)
    with pytest.raises(NotFittedError):
        ConformalIntervals().interval([1.0])
