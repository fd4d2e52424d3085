"""The decision drops members that do not pay out of fold, and keeps those that do."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from prognos.models.bundle import PostProcessing
from prognos.models.selection import alert_cost, best_subset, rul_loss


def _oof(rng: np.random.Generator, n: int = 1500, folds: int = 5) -> pd.DataFrame:
    """Out-of-fold rows of three members: ``a`` and ``b`` informative with independent errors,
    ``copy`` a noisier copy of ``a`` (it can only add noise: its best weight is 0)."""
    rul = rng.uniform(0, 200, n)
    capped = np.minimum(rul, 125.0)
    margin = (30.0 - rul) / 8.0
    rul_a, proba_a = capped + rng.normal(0, 10, n), expit(margin + rng.normal(0, 3.0, n))
    return pd.DataFrame(
        {
            "fold": rng.integers(0, folds, n),
            "rul": rul,
            "rul_capped": capped,
            "failed": (rul <= 30).astype(int),
            "rul__a": rul_a,
            "rul__b": capped + rng.normal(0, 10, n),
            "rul__copy": rul_a + rng.normal(0, 15, n),
            "proba__a": proba_a,
            "proba__b": expit(margin + rng.normal(0, 3.0, n)),
            "proba__copy": expit(logit(proba_a) + rng.normal(0, 3, n)),
        }
    )


def test_a_member_that_adds_nothing_is_dropped_and_complementary_ones_are_kept() -> None:
    oof = _oof(np.random.default_rng(0))
    cost = alert_cost(0.038, 50_000, 2_000)
    assert best_subset(oof, ["a", "b"], rul_loss()) == ["a", "b"]
    assert best_subset(oof, ["a", "b"], cost) == ["a", "b"]
    assert best_subset(oof, ["copy", "a"], rul_loss()) == ["a"]
    assert best_subset(oof, ["copy", "a"], cost) == ["a"]
    assert best_subset(oof, ["a", "b"], cost, prefer="all") == ["a", "b"]


def test_within_the_noise_the_probability_keeps_every_member() -> None:
    """ "fewest" lets a difference within one standard error fall to fewer members, "all" to every
    member; a subset better by more than the noise wins either way."""
    rng = np.random.default_rng(0)
    oof = pd.DataFrame({"fold": np.repeat(np.arange(5), 200)})
    noise = rng.normal(0, 1, len(oof))

    def close(train: pd.DataFrame, held: pd.DataFrame, subset: list[str]) -> np.ndarray:
        # The pair is better on average, by less than one standard error (about 22 here).
        base = noise[held.index] ** 2
        return base - (0.005 if len(subset) == 2 else 0.0) + rng.normal(0, 0.5, len(held))

    def harmful(train: pd.DataFrame, held: pd.DataFrame, subset: list[str]) -> np.ndarray:
        return np.full(len(held), 1.0 if "bad" in subset else 0.0) + rng.normal(0, 0.1, len(held))

    assert len(best_subset(oof, ["a", "b"], close)) == 1
    assert best_subset(oof, ["a", "b"], close, prefer="all") == ["a", "b"]
    assert best_subset(oof, ["a", "bad"], harmful, prefer="all") == ["a"]
    assert best_subset(oof, ["a", "bad"], harmful) == ["a"]


def test_the_fitted_decision_gives_dropped_members_weight_and_slope_zero() -> None:
    oof = _oof(np.random.default_rng(0))
    post = PostProcessing.fit(
        oof, ["a", "copy"], coverage=0.9, cost_missed=50_000, cost_false_alarm=2_000, rul_cap=125
    )
    assert post.rul_weights == {"a": 1.0, "copy": 0.0}
    assert post.stack.coef_["copy"] == 0.0 and post.stack.coef_["a"] > 0
    assert post.members == ["a"]
    # The dropped member's predictions are not needed to apply it.
    out = post.apply({"a": oof["rul__a"].to_numpy()}, {"a": oof["proba__a"].to_numpy()})
    assert np.isfinite(out["rul"]).all() and set(np.unique(out["alert"])) <= {0.0, 1.0}


def test_without_folds_every_member_is_kept() -> None:
    oof = _oof(np.random.default_rng(0)).drop(columns="fold")
    assert best_subset(oof, ["a", "copy"], rul_loss()) == ["a", "copy"]
    one_fold = _oof(np.random.default_rng(0), folds=1)
    assert best_subset(one_fold, ["a", "copy"], rul_loss()) == ["a", "copy"]


def test_without_selection_every_member_keeps_its_fitted_weight() -> None:
    oof = _oof(np.random.default_rng(0))
    post = PostProcessing.fit(
        oof, ["a", "copy"], coverage=0.9, cost_missed=50_000, cost_false_alarm=2_000,
        rul_cap=125, select=False,
    )  # fmt: skip
    assert post.members == ["a", "copy"] and post.rul_weights["copy"] > 0
