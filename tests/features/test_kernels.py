"""Window arithmetic on small cases computed by hand (and by NumPy's own polyfit)."""

from __future__ import annotations

import numpy as np
import pytest

from prognos.features.kernels import (
    FeatureLayout,
    _prefix,
    ewma_step,
    gather_lags,
    lag_depth,
    window_features,
)
from prognos.features.spec import FeatureSpec

X = np.array([1.0, 2.0, 4.0, 7.0, 3.0])
SPEC = FeatureSpec(
    windows=[3],
    lags=[1, 2],
    rate_of_change=[2],
    ewma_spans=[],
    include_age=False,
    include_regime=False,
)


def _features() -> dict[str, np.ndarray]:
    layout = FeatureLayout.build(SPEC, ["s"])
    padded_channels = np.append(X, 0.0)[None, :]
    pos = np.arange(len(X))
    lagged, padded = gather_lags(padded_channels, pos, pos, lag_depth(SPEC))
    out = np.empty((len(X), layout.n_features))
    window_features(lagged, padded, pos + 1.0, layout, out)
    return {name.split("__")[1]: out[:, j] for j, name in enumerate(layout.names)}


def test_accumulation_strategies_agree_bit_for_bit() -> None:
    """One row (online) and many rows (offline) take different loops to the same bits."""
    rng = np.random.default_rng(0)
    stack = rng.normal(size=(3, 30, 50)) * 1e-3 + rng.normal(size=(3, 30, 50))
    for op in (np.add, np.minimum, np.maximum):
        many = _prefix(op, stack, [4, 9, 29])
        one_by_one = np.concatenate(
            [_prefix(op, stack[:, :, r : r + 1], [4, 9, 29]) for r in range(50)], axis=2
        )
        np.testing.assert_array_equal(many, one_by_one)


def test_value_and_partial_windows_match_hand_computation() -> None:
    f = _features()
    np.testing.assert_allclose(f["value"], X)
    np.testing.assert_allclose(f["mean_3"], [1, 1.5, 7 / 3, 13 / 3, 14 / 3])
    np.testing.assert_allclose(f["min_3"], [1, 1, 1, 2, 3])
    np.testing.assert_allclose(f["max_3"], [1, 2, 4, 7, 7])
    # sample std (ddof=1); a single reading has std 0
    expected_std = [
        0.0,
        np.std([1, 2], ddof=1),
        np.std([1, 2, 4], ddof=1),
        np.std([2, 4, 7], ddof=1),
        np.std([4, 7, 3], ddof=1),
    ]
    np.testing.assert_allclose(f["std_3"], expected_std, atol=1e-12)


def test_slope_is_least_squares_per_reading() -> None:
    f = _features()
    expected = [0.0] + [
        np.polyfit(np.arange(len(w)), w, 1)[0] for w in ([1, 2], [1, 2, 4], [2, 4, 7], [4, 7, 3])
    ]
    np.testing.assert_allclose(f["slope_3"], expected, atol=1e-12)


def test_lags_clamp_to_first_reading_and_rate_of_change() -> None:
    f = _features()
    np.testing.assert_allclose(f["lag_1"], [1, 1, 2, 4, 7])
    np.testing.assert_allclose(f["lag_2"], [1, 1, 1, 2, 4])
    np.testing.assert_allclose(f["roc_2"], [0, 1, 3, 5, -1])


def test_ewma_step_is_the_recursive_definition() -> None:
    y = np.array([1.0])
    for x in X[1:]:
        y = ewma_step(y, np.array([x]), 0.5)
    # 1 -> 1.5 -> 2.75 -> 4.875 -> 3.9375
    assert y[0] == pytest.approx(3.9375)


def test_layout_names_are_stable_and_unique() -> None:
    layout = FeatureLayout.build(FeatureSpec(), ["sensor_7", "health_index"])
    assert len(set(layout.names)) == layout.n_features
    assert "sensor_7__mean_10" in layout.names
    assert "health_index__slope_30" in layout.names
    assert layout.names[-2:] == ["age", "regime"]
