"""Ensemble weights: a convex combination that finds the good member and drops the useless one."""

from __future__ import annotations

import numpy as np
import pytest

from prognos.models.ensemble import blend, fit_weights_proba, fit_weights_rul

RNG_SEED = 7


def _rul_problem(n: int = 2000) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(RNG_SEED)
    return np.minimum(rng.uniform(0, 200, n), 125.0), rng


def _proba_problem(n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(RNG_SEED)
    p = rng.beta(0.5, 0.5, n)  # calibrated probabilities, mostly confident
    return p, (rng.uniform(size=n) < p).astype(np.int64), rng


def _check_simplex(weights: dict[str, float], names: list[str]) -> None:
    assert list(weights) == names
    assert all(w >= 0 for w in weights.values())
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-12)


def test_rul_weights_are_a_convex_combination() -> None:
    y, rng = _rul_problem()
    members = {f"m{k}": y + rng.normal(0, 5 + 5 * k, y.size) + 3 * k for k in range(4)}
    weights = fit_weights_rul(members, y)
    _check_simplex(weights, list(members))


def test_proba_weights_are_a_convex_combination() -> None:
    p, y, rng = _proba_problem()
    members = {f"m{k}": np.clip(p + rng.normal(0, 0.1 * k, p.size), 0, 1) for k in range(4)}
    weights = fit_weights_proba(members, y)
    _check_simplex(weights, list(members))


def test_perfect_member_beats_noise_for_rul() -> None:
    y, rng = _rul_problem()
    weights = fit_weights_rul({"noise": rng.uniform(0, 125, y.size), "perfect": y.copy()}, y)
    assert weights["perfect"] > 0.9
    _check_simplex(weights, ["noise", "perfect"])


def test_perfect_member_beats_noise_for_proba() -> None:
    p, y, rng = _proba_problem()
    weights = fit_weights_proba({"perfect": p, "noise": rng.uniform(size=p.size)}, y)
    assert weights["perfect"] > 0.9
    _check_simplex(weights, ["perfect", "noise"])


def test_useless_members_get_about_zero() -> None:
    y, rng = _rul_problem()
    good = y + rng.normal(0, 8, y.size)
    constant = np.full(y.size, float(y.mean()))
    weights = fit_weights_rul(
        {"good": good, "constant": constant, "shuffled": rng.permutation(y)}, y
    )
    assert weights["constant"] < 0.05 and weights["shuffled"] < 0.05

    p, labels, rng = _proba_problem()
    weights_p = fit_weights_proba({"good": p, "base_rate": np.full(p.size, labels.mean())}, labels)
    assert weights_p["base_rate"] < 0.05


def test_rul_weights_match_the_two_member_closed_form() -> None:
    """Two members: the optimum of |w a + (1 - w) b - y|^2 is a clipped projection."""
    y, rng = _rul_problem()
    a = y + rng.normal(0, 10, y.size)
    b = y + rng.normal(0, 15, y.size) + 0.5 * (a - y)  # correlated errors: an interior optimum
    expected = float(np.clip(np.dot(a - b, y - b) / np.dot(a - b, a - b), 0, 1))
    assert 0.2 < expected < 1.0
    weights = fit_weights_rul({"a": a, "b": b}, y)
    assert weights["a"] == pytest.approx(expected, abs=1e-4)


def test_two_equal_independent_members_share_equally() -> None:
    p, y, rng = _proba_problem(20000)
    logit = np.log(p / (1 - p))
    members = {name: 1 / (1 + np.exp(-(logit + rng.normal(0, 1.0, p.size)))) for name in ("x", "y")}
    weights = fit_weights_proba(members, y)
    assert weights["x"] == pytest.approx(0.5, abs=0.1)


def test_single_member_gets_all_the_weight() -> None:
    y, rng = _rul_problem(50)
    assert fit_weights_rul({"only": rng.uniform(0, 125, y.size)}, y) == {"only": 1.0}
    p, labels, _ = _proba_problem(50)
    assert fit_weights_proba({"only": p}, labels) == {"only": 1.0}


def test_indistinguishable_members_share() -> None:
    y, rng = _rul_problem(100)
    same = y + rng.normal(0, 5, y.size)
    _check_simplex(fit_weights_rul({"a": same, "b": same.copy()}, y), ["a", "b"])
    assert fit_weights_rul({"a": y.copy(), "b": y.copy()}, y) == {"a": 0.5, "b": 0.5}


def test_blend_is_the_weighted_average() -> None:
    predictions = {"a": np.array([0.0, 10.0, 20.0]), "b": np.array([30.0, 40.0, 50.0])}
    np.testing.assert_allclose(
        blend(predictions, {"a": 0.25, "b": 0.75}),
        0.25 * predictions["a"] + 0.75 * predictions["b"],
    )
    np.testing.assert_allclose(blend(predictions, {"a": 1.0, "b": 0.0}), predictions["a"])
    # a dropped member (weight 0) need not be predicted at all
    np.testing.assert_allclose(blend({"a": predictions["a"]}, {"a": 1.0, "b": 0.0}), [0, 10, 20])


def test_blend_of_fitted_weights_is_no_worse_than_the_best_member() -> None:
    y, rng = _rul_problem()
    members = {"a": y + rng.normal(0, 10, y.size), "b": y + rng.normal(0, 10, y.size)}
    blended = blend(members, fit_weights_rul(members, y))
    best = min(float(np.mean((m - y) ** 2)) for m in members.values())
    assert float(np.mean((blended - y) ** 2)) < best


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="no member"):
        fit_weights_rul({}, np.zeros(3))
    with pytest.raises(ValueError, match="predictions for"):
        fit_weights_rul({"a": np.zeros(3)}, np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        fit_weights_rul({"a": np.array([np.nan, 1.0]), "b": np.ones(2)}, np.zeros(2))
    with pytest.raises(ValueError, match="0 or 1"):
        fit_weights_proba({"a": np.ones(2) / 2, "b": np.ones(2) / 3}, np.array([0, 2]))
    with pytest.raises(ValueError, match="no predictions"):
        blend({"a": np.ones(2)}, {"b": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        blend({"a": np.ones(2)}, {"a": -1.0})
    with pytest.raises(ValueError, match="zero"):
        blend({"a": np.ones(2)}, {"a": 0.0})
