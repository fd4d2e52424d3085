"""Ensemble weights: a convex combination that finds the good member and drops the useless one."""

from __future__ import annotations

import numpy as np
import pytest

from prognos.errors import NotFittedError
from prognos.models.ensemble import LogitStack, blend, fit_weights_rul

RNG_SEED = 7


def _rul_problem(n: int = 2000) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(RNG_SEED)
    return np.minimum(rng.uniform(0, 200, n), 125.0), rng


def _check_simplex(weights: dict[str, float], names: list[str]) -> None:
    assert list(weights) == names
    assert all(w >= 0 for w in weights.values())
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-12)


def test_rul_weights_are_a_convex_combination() -> None:
    y, rng = _rul_problem()
    members = {f"m{k}": y + rng.normal(0, 5 + 5 * k, y.size) + 3 * k for k in range(4)}
    weights = fit_weights_rul(members, y)
    _check_simplex(weights, list(members))


def test_perfect_member_beats_noise_for_rul() -> None:
    y, rng = _rul_problem()
    weights = fit_weights_rul({"noise": rng.uniform(0, 125, y.size), "perfect": y.copy()}, y)
    assert weights["perfect"] > 0.9
    _check_simplex(weights, ["noise", "perfect"])


def test_useless_members_get_about_zero() -> None:
    y, rng = _rul_problem()
    good = y + rng.normal(0, 8, y.size)
    constant = np.full(y.size, float(y.mean()))
    weights = fit_weights_rul(
        {"good": good, "constant": constant, "shuffled": rng.permutation(y)}, y
    )
    assert weights["constant"] < 0.05 and weights["shuffled"] < 0.05


def test_rul_weights_match_the_two_member_closed_form() -> None:
    """Two members: the optimum of |w a + (1 - w) b - y|^2 is a clipped projection."""
    y, rng = _rul_problem()
    a = y + rng.normal(0, 10, y.size)
    b = y + rng.normal(0, 15, y.size) + 0.5 * (a - y)  # correlated errors: an interior optimum
    expected = float(np.clip(np.dot(a - b, y - b) / np.dot(a - b, a - b), 0, 1))
    assert 0.2 < expected < 1.0
    weights = fit_weights_rul({"a": a, "b": b}, y)
    assert weights["a"] == pytest.approx(expected, abs=1e-4)


def test_single_member_gets_all_the_weight() -> None:
    y, rng = _rul_problem(50)
    assert fit_weights_rul({"only": rng.uniform(0, 125, y.size)}, y) == {"only": 1.0}


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
    with pytest.raises(ValueError, match="no predictions"):
        blend({"a": np.ones(2)}, {"b": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        blend({"a": np.ones(2)}, {"a": -1.0})
    with pytest.raises(ValueError, match="zero"):
        blend({"a": np.ones(2)}, {"a": 0.0})


# -- the failure probability: stacked log-odds ------------------------------------------------


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def test_logit_stack_learns_slopes_and_drops_a_useless_member() -> None:
    """Truth: logit = -1 + 2 * z. A member reporting sigmoid(z) needs slope 2 (it is
    under-confident), a member reporting noise gets slope ~0, and the intercept is found."""
    rng = np.random.default_rng(RNG_SEED)
    z = rng.normal(0, 1.5, 20_000)
    y = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-(-1 + 2 * z)))).astype(np.int64)
    members = {"good": 1 / (1 + np.exp(-z)), "noise": rng.uniform(0.01, 0.99, z.size)}
    stack = LogitStack().fit(members, y)
    assert stack.coef_["good"] == pytest.approx(2.0, abs=0.1)
    assert stack.coef_["noise"] < 0.05
    assert stack.intercept_ == pytest.approx(-1.0, abs=0.1)
    # The served log-odds are affine in each member's log-odds: what explanations rely on.
    served = stack.decision_function(members)
    expected = stack.intercept_ + sum(c * _logit(members[m]) for m, c in stack.coef_.items())
    np.testing.assert_allclose(served, expected, atol=1e-9)
    np.testing.assert_allclose(stack.predict(members), 1 / (1 + np.exp(-served)))


def test_logit_stack_is_calibrated_on_fresh_data() -> None:
    """Two members that see different halves of the evidence and are both mis-calibrated
    (one inflated by a class weight): the stack's probabilities match the frequencies."""
    rng = np.random.default_rng(3)

    def draw(n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        a, b = rng.normal(0, 1, n), rng.normal(0, 1, n)
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(-2 + a + b)))).astype(np.int64)
        return {"a": 1 / (1 + np.exp(-(3 + 0.5 * a))), "b": 1 / (1 + np.exp(-2 * b))}, y

    members, y = draw(20_000)
    stack = LogitStack().fit(members, y)
    fresh, y_new = draw(50_000)
    p = stack.predict(fresh)
    for low, high in [(0.0, 0.1), (0.1, 0.3), (0.3, 0.6), (0.6, 1.0)]:
        inside = (p >= low) & (p < high)
        assert abs(p[inside].mean() - y_new[inside].mean()) < 0.02
    # Better than either member alone after its own Platt scaling.
    loss = -np.mean(y_new * np.log(p) + (1 - y_new) * np.log1p(-p))
    for name in members:
        alone = LogitStack().fit({name: members[name]}, y).predict({name: fresh[name]})
        assert loss < -np.mean(y_new * np.log(alone) + (1 - y_new) * np.log1p(-alone)) - 0.02


def test_logit_stack_degenerate_and_bad_input() -> None:
    p = np.array([0.0, 1.0, 0.5, 0.2])  # exact 0 and 1 are clipped: finite log-odds
    one_class = LogitStack().fit({"m": p}, [0, 0, 0, 0])
    assert one_class.coef_ == {"m": 0.0}
    assert np.all(one_class.predict({"m": p}) < 1e-6)
    stack = LogitStack().fit({"m": p}, [0, 1, 1, 0])
    assert np.isfinite(stack.decision_function({"m": p})).all()
    with pytest.raises(ValueError, match="0 or 1"):
        LogitStack().fit({"m": p}, [0, 2, 1, 0])
    with pytest.raises(ValueError, match="finite"):
        LogitStack().fit({"m": [0.1, np.nan]}, [0, 1])
    with pytest.raises(ValueError, match="no predictions"):
        stack.decision_function({"other": p})
    with pytest.raises(NotFittedError):
        LogitStack().predict({"m": p})
