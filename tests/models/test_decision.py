"""Decision rules: thresholds enumerated by hand, calibration, conformal intervals."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from prognos.errors import NotFittedError
from prognos.models.decision import (
    Calibrator,
    ConformalIntervals,
    conformal_interval,
    conformal_width,
    cost_optimal_threshold,
    f2_optimal_threshold,
)
from prognos.training.metrics import classification_metrics, expected_cost

# -- thresholds -------------------------------------------------------------------------------


def test_cost_and_f2_thresholds_differ_by_hand() -> None:
    # positives at 0.9 and 0.1; ten negatives at 0.2, 0.25, ..., 0.65.
    # threshold  alerts          fn fp   cost (50k/2k)   F2 = 5tp / (5tp + 4fn + fp)
    # 1.0        none            2  0    100_000         0
    # 0.9        pos 0.9         1  0     50_000         5 / 9  = 0.556  <- F2 optimum
    # 0.65..0.2  + k negatives   1  k     50_000 + 2k k  5 / (9 + k) < 5/9
    # 0.1        everything      0  10    20_000         10 / 20 = 0.5   <- cost optimum
    # 0.0        everything      0  10    20_000 (tie with 0.1: the higher, 0.1, wins)
    y = np.array([1, 1] + [0] * 10)
    p = np.array([0.9, 0.1, *np.linspace(0.2, 0.65, 10)])
    assert cost_optimal_threshold(y, p) == pytest.approx(0.1)
    assert f2_optimal_threshold(y, p) == pytest.approx(0.9)
    assert classification_metrics(y, p, 0.9)["f2"] == pytest.approx(5 / 9)


def test_cost_optimal_ties_go_to_the_highest_threshold() -> None:
    # both positives: thresholds 0 and 0.3 alert both (cost 0); 0.6 misses one; 1 misses both
    assert cost_optimal_threshold([1, 1], [0.3, 0.6]) == pytest.approx(0.3)
    # no positives: never alerting (threshold 1) costs nothing
    assert cost_optimal_threshold([0, 0, 0], [0.2, 0.5, 0.9]) == 1.0


def test_cost_optimal_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    p = np.round(np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1), 2)  # with ties
    for cm, cf in [(50_000.0, 2_000.0), (1.0, 1.0), (1.0, 20.0)]:
        t = cost_optimal_threshold(y, p, cm, cf)
        candidates = np.unique(np.r_[p, 0.0, 1.0])
        costs = np.array([expected_cost(y, p >= c, cm, cf) for c in candidates])
        assert expected_cost(y, p >= t, cm, cf) == pytest.approx(costs.min())
        assert t == candidates[np.flatnonzero(costs == costs.min())[-1]]


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
        cost_optimal_threshold([0, 3], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cost_optimal_threshold([0, 1], [0.1, 1.2])
    # float rounding just past 1 (a weighted blend) is tolerated
    assert cost_optimal_threshold([0, 1], [0.1, 1.0 + 1e-15]) == 1.0


# -- calibration ------------------------------------------------------------------------------


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True probabilities q, outcomes y ~ Bernoulli(q), and distorted scores p = q**3."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.0, 1.0, n)
    y = (rng.uniform(size=n) < q).astype(np.int64)
    return q**3, y, q


def _brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


@pytest.mark.parametrize("use_groups", [False, True])
def test_calibrator_auto_improves_brier_on_fresh_data(use_groups: bool) -> None:
    p, y, _ = _miscalibrated(4_000, seed=0)
    groups = np.repeat(np.arange(400), 10) if use_groups else None
    cal = Calibrator().fit(p, y, groups=groups)
    assert cal.method_ in {"platt", "isotonic"}
    assert set(cal.cv_scores_) == {"platt", "isotonic"}
    assert cal.cv_scores_[cal.method_] == min(cal.cv_scores_.values())

    p_new, y_new, q_new = _miscalibrated(20_000, seed=1)
    calibrated = cal.predict(p_new)
    assert _brier(calibrated, y_new) < _brier(p_new, y_new) - 0.01
    # close to the best possible (the true probabilities)
    assert _brier(calibrated, y_new) < _brier(q_new, y_new) + 0.005
    assert np.all((calibrated >= 0) & (calibrated <= 1))


def test_platt_on_calibrated_scores_is_near_identity() -> None:
    _, y, q = _miscalibrated(20_000, seed=2)
    cal = Calibrator("platt").fit(q, y)
    assert cal.method_ == "platt"
    assert cal.coef_ == pytest.approx(1.0, abs=0.1)
    assert cal.intercept_ == pytest.approx(0.0, abs=0.1)


def test_calibrator_explicit_methods_degenerate_cases_and_pickle() -> None:
    p, y, _ = _miscalibrated(500, seed=4)
    iso = Calibrator("isotonic").fit(p, y)
    assert iso.method_ == "isotonic"
    assert np.all(np.diff(iso.predict(np.linspace(0, 1, 50))) >= 0)  # monotone
    clone = pickle.loads(pickle.dumps(iso))
    np.testing.assert_array_equal(clone.predict(p), iso.predict(p))

    assert Calibrator().fit(p, np.zeros_like(y)).method_ == "identity"  # nothing to learn
    np.testing.assert_array_equal(Calibrator("identity").fit(p, y).predict(p), p)
    tiny = Calibrator().fit([0.1, 0.9, 0.2], [0, 1, 0])  # too few for 2 folds
    assert tiny.method_ == "platt"
    assert tiny.cv_scores_ == {}
    with pytest.raises(NotFittedError):
        Calibrator().predict(p)
    with pytest.raises(ValueError, match="unknown"):
        Calibrator("magic").fit(p, y)  # type: ignore[arg-type]


# -- conformal intervals ----------------------------------------------------------------------


def test_conformal_width_on_known_residuals() -> None:
    residuals = np.arange(1.0, 20.0)  # |r| = 1..19, n = 19
    # k = ceil((19 + 1) * 0.9) = 18 -> the 18th smallest, 18
    assert conformal_width(residuals, np.zeros(19), 0.9) == 18.0
    # n = 10: k = ceil(11 * 0.9) = ceil(9.9) = 10 -> the largest
    assert conformal_width(np.arange(1.0, 11.0), np.zeros(10), 0.9) == 10.0
    # n = 9: k = ceil(10 * 0.9) = 9 (not 10: 10 * 0.9 rounds to 9.000...1)
    assert conformal_width(np.arange(1.0, 10.0), np.zeros(9), 0.9) == 9.0
    # n = 5: k = ceil(5.4) = 6 > 5: no finite width guarantees 90%
    assert conformal_width(np.arange(1.0, 6.0), np.zeros(5), 0.9) == math.inf
    # signs do not matter
    assert conformal_width(np.zeros(19), residuals * np.where(residuals % 2, 1, -1), 0.9) == 18.0


def test_conformal_coverage_on_fresh_draws() -> None:
    rng = np.random.default_rng(11)
    # many small calibration sets: average coverage is k/(n+1) = 181/201 ~ 0.9005
    reps, n_cal, n_test = 300, 200, 2_000
    covered = []
    for _ in range(reps):
        width = conformal_width(rng.standard_t(3, n_cal), np.zeros(n_cal), 0.9)
        covered.append(np.mean(np.abs(rng.standard_t(3, n_test)) <= width))
    assert 0.88 <= float(np.mean(covered)) <= 0.93
    # one large calibration set, a large fresh sample
    width = conformal_width(rng.standard_t(3, 5_000), np.zeros(5_000), 0.9)
    assert 0.88 <= float(np.mean(np.abs(rng.standard_t(3, 200_000)) <= width)) <= 0.93


def test_conformal_interval_clips_at_zero() -> None:
    lower, upper = conformal_interval([5.0, 50.0], 10.0)
    np.testing.assert_array_equal(lower, [0.0, 40.0])
    np.testing.assert_array_equal(upper, [15.0, 60.0])
    lower, _ = conformal_interval([5.0], 10.0, lower_bound=-np.inf)
    assert lower[0] == -5.0


def _heteroscedastic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pred = rng.uniform(0.0, 125.0, n)
    # error grows with RUL; true RUL is never negative
    return np.maximum(pred + rng.normal(0.0, 1.0 + 0.2 * pred), 0.0), pred


def test_conformal_intervals_adapt_to_rul_and_keep_coverage() -> None:
    rng = np.random.default_rng(5)
    y_cal, pred_cal = _heteroscedastic(5_000, rng)
    ci = ConformalIntervals(0.9).fit(y_cal, pred_cal, bins=4)
    assert ci.edges_.size == 3
    assert np.all(np.diff(ci.widths_) > 0)  # wider where RUL is larger
    assert ci.coverage_ >= 0.9

    y_new, pred_new = _heteroscedastic(100_000, rng)
    lower, upper = ci.interval(pred_new)
    inside = (lower <= y_new) & (y_new <= upper)
    assert 0.88 <= inside.mean() <= 0.93
    assert np.all(lower >= 0.0)
    # near failure (lowest bin) the global width over-covers, the binned one does not
    near = pred_new < ci.edges_[0]
    global_width = conformal_width(y_cal, pred_cal, 0.9)
    assert np.mean(np.abs(y_new - pred_new)[near] <= global_width) > 0.97
    assert 0.87 <= inside[near].mean() <= 0.94
    assert ci.mean_width_ < 2 * global_width

    clone = pickle.loads(pickle.dumps(ci))
    np.testing.assert_array_equal(clone.interval(pred_new[:10])[1], upper[:10])


def test_conformal_intervals_merge_small_bins_and_accept_edges() -> None:
    rng = np.random.default_rng(6)
    y, pred = _heteroscedastic(120, rng)
    merged = ConformalIntervals(0.9, min_bin_size=50).fit(y, pred, bins=4)
    assert merged.counts_.min() >= 50
    assert merged.counts_.sum() == 120
    assert merged.edges_.size <= 1

    one = ConformalIntervals(0.9, min_bin_size=1_000).fit(y, pred, bins=4)
    assert one.edges_.size == 0
    assert one.widths_[0] == conformal_width(y, pred, 0.9)

    y, pred = _heteroscedastic(2_000, rng)
    explicit = ConformalIntervals(0.9).fit(y, pred, bins=[30.0, 90.0])
    np.testing.assert_array_equal(explicit.edges_, [30.0, 90.0])
    np.testing.assert_array_equal(explicit.width([10.0, 60.0, 200.0]), explicit.widths_)
    with pytest.raises(NotFittedError):
        ConformalIntervals().interval([1.0])
