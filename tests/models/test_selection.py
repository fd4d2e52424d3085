"""The decision drops members that do not pay out of fold, and keeps those that do."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from prognos.models.bundle import PostProcessing
from prognos.models.selection import Scorer, alert_cost, best_subset, rul_loss


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


def _fixed_losses(per_row: dict[str, np.ndarray]) -> Scorer:
    """A scorer that returns given per-row losses for a subset (keyed by its members' names)."""

    def score(train: pd.DataFrame, held: pd.DataFrame, subset: list[str]) -> np.ndarray:
        return per_row["+".join(subset)][held.index.to_numpy()]

    return score


def _asset_noise(rng: np.random.Generator, assets: np.ndarray) -> np.ndarray:
    """One zero-mean offset per asset (all its rows err together), repeated on its rows."""
    offsets = rng.normal(0, 1, assets.max() + 1)
    return (offsets - offsets.mean())[assets]


def test_rows_of_one_asset_count_as_one_piece_of_evidence() -> None:
    """The pair beats one member by 0.08 a row on average, with errors shared by each asset's 20
    cuts. Counted per row (800 rows) that is more than one standard error; per asset (40 assets)
    it is not, so the single member is kept alone. A clear 0.3 a row keeps the pair."""
    assets = np.repeat(np.arange(40), 20)
    oof = pd.DataFrame({"fold": assets % 5, "asset_id": assets})
    one = np.ones(len(oof))
    noise = _asset_noise(np.random.default_rng(0), assets)
    losses = {"a": one, "b": one + 1, "a+b": one - 0.08 + noise}
    assert best_subset(oof, ["a", "b"], _fixed_losses(losses)) == ["a"]
    assert best_subset(oof.drop(columns="asset_id"), ["a", "b"], _fixed_losses(losses)) == [
        "a",
        "b",
    ]
    losses["a+b"] = one - 0.3 + noise
    assert best_subset(oof, ["a", "b"], _fixed_losses(losses)) == ["a", "b"]


def test_between_close_subsets_of_one_size_the_lower_total_wins() -> None:
    """Both single members are within the noise of the pair: the better one is kept, not the
    one listed first."""
    assets = np.repeat(np.arange(40), 5)
    oof = pd.DataFrame({"fold": assets % 5, "asset_id": assets})
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 2, len(oof))
    losses = {
        "a": base + 0.02 + _asset_noise(rng, assets),
        "b": base + 0.01 + _asset_noise(rng, assets),
        "a+b": base,
    }
    assert best_subset(oof, ["a", "b"], _fixed_losses(losses)) == ["b"]
