"""Tree members learn a simulated fleet, react to degradation the right way, keep the contract."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from prognos.data.labels import run_to_failure_labels
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.errors import LabelError, NotFittedError, SchemaError
from prognos.features import FeaturePipeline, FeatureSpec
from prognos.fleet import ASSET, TIME
from prognos.models.base import Member, ModelInput, Targets
from prognos.models.trees import GradientBoostedMember, RandomForestMember, cuda_available

# A lean feature set keeps the suite fast; the members see the same kind of matrix as in production.
SPEC = FeatureSpec(
    windows=[10],
    aggregations=["mean", "std", "slope"],
    lags=[5],
    rate_of_change=[5],
    ewma_spans=[10],
)


def _config(seed: int) -> SimulatorConfig:
    """A fleet whose degradation is visible. With the simulator's defaults (6 of 12 sensors
    degrade, noise 0.05, lives from 120) per-asset offsets and late onsets hide much of the damage
    and cap any model's RUL correlation near 0.8; here the members should reach ~0.9."""
    return SimulatorConfig(
        n_assets=40, seed=seed, n_fault_sensors=8, min_life=150, max_life=300, noise=0.03
    )


@dataclass(frozen=True)
class Split:
    X: ModelInput
    y: Targets
    time: np.ndarray
    fault_sensors: list[str]


def _split(pipeline: FeaturePipeline, seed: int) -> Split:
    data = simulate_fleet(_config(seed))
    readings = data.readings
    labels = run_to_failure_labels(readings)
    features = pipeline.transform(readings)
    n = len(readings)
    X = ModelInput(
        features=features.to_numpy(dtype=np.float64),
        feature_names=list(features.columns),
        sequences=np.zeros((n, 1, 1), dtype=np.float32),  # trees ignore the sequence view
        lengths=np.ones(n, dtype=np.int64),
        groups=readings[ASSET].to_numpy(),
    )
    y = Targets(
        rul=labels["rul_capped"].to_numpy(dtype=np.float64),
        failed=labels["failure_within_h"].to_numpy(dtype=np.int64),
    )
    return Split(X, y, readings[TIME].to_numpy(), cast(list[str], data.meta["fault_sensors"]))


@pytest.fixture(scope="module")
def fleets() -> tuple[Split, Split]:
    """Train and held-out fleets of the same design (different assets); pipeline fit on train."""
    train_data = simulate_fleet(_config(11))
    pipeline = FeaturePipeline(train_data.spec, SPEC).fit(train_data.readings)
    return _split(pipeline, 11), _split(pipeline, 12)


def _small_gbm(**params: Any) -> GradientBoostedMember:
    defaults: dict[str, Any] = {
        "n_estimators": 150,
        "learning_rate": 0.1,
        "max_depth": 4,
        "early_stopping_rounds": 15,
        "n_jobs": 1,  # tiny fits gain nothing from threads, and lose a lot on a busy machine
    }
    return GradientBoostedMember(**{**defaults, **params})


def _small_rf(**params: Any) -> RandomForestMember:
    return RandomForestMember(**{"n_estimators": 30, "max_features": "sqrt", "n_jobs": 1, **params})


MAKERS = {"xgboost": _small_gbm, "forest": _small_rf}


@pytest.fixture(scope="module", params=list(MAKERS))
def fitted(
    request: pytest.FixtureRequest, fleets: tuple[Split, Split]
) -> GradientBoostedMember | RandomForestMember:
    train, _ = fleets
    return MAKERS[request.param]().fit(train.X, train.y)


# --- learning -------------------------------------------------------------------------------------


def test_learns_held_out_assets(
    fitted: GradientBoostedMember | RandomForestMember, fleets: tuple[Split, Split]
) -> None:
    _, test = fleets
    rul = fitted.predict_rul(test.X)
    proba = fitted.predict_proba(test.X)
    assert rul.shape == proba.shape == (len(test.X),)
    assert (rul >= 0).all()
    assert ((proba >= 0) & (proba <= 1)).all()
    assert pearsonr(rul, test.y.rul).statistic > 0.8
    assert roc_auc_score(test.y.failed, proba) > 0.95
    rmse = float(np.sqrt(np.mean((rul - test.y.rul) ** 2)))
    assert rmse < 0.6 * float(np.std(test.y.rul))


def test_late_life_means_higher_risk_and_lower_rul(
    fitted: GradientBoostedMember | RandomForestMember, fleets: tuple[Split, Split]
) -> None:
    """Rising damage (late life) must raise the failure probability and lower the RUL."""
    _, test = fleets
    rul = fitted.predict_rul(test.X)
    proba = fitted.predict_proba(test.X)
    for asset in np.unique(test.X.groups):
        rows = np.flatnonzero(test.X.groups == asset)
        rows = rows[np.argsort(test.time[rows])]
        early, late = rows[:30], rows[-10:]
        assert proba[late].mean() > proba[early].mean() + 0.5, asset
        assert rul[late].mean() < rul[early].mean() - 50, asset


def test_degrading_fault_sensors_raise_risk(
    fitted: GradientBoostedMember | RandomForestMember, fleets: tuple[Split, Split]
) -> None:
    """Moving a healthy row's health-index features to their failure values raises risk.

    The health index is oriented to rise with age, so this is 'the degradation signal rises'
    with everything else (age, regime, the raw sensors) held at healthy values.
    """
    _, test = fleets
    names = test.X.feature_names
    health = [j for j, n in enumerate(names) if n.startswith("health_index__")]
    fault = [j for j, n in enumerate(names) if n.split("__")[0] in test.fault_sensors]
    failing = test.y.rul == 0
    healthy = np.flatnonzero(test.y.rul >= 125)[::50]
    X = test.X.take(healthy)
    degraded = X.features.copy()
    for cols in (health, fault):
        degraded[:, cols] = np.median(test.X.features[failing][:, cols], axis=0)
    Xd = replace(X, features=degraded)
    assert fitted.predict_proba(Xd).mean() > fitted.predict_proba(X).mean() + 0.3
    assert fitted.predict_rul(Xd).mean() < fitted.predict_rul(X).mean() - 30


def test_importances_point_at_degradation(
    fitted: GradientBoostedMember | RandomForestMember, fleets: tuple[Split, Split]
) -> None:
    train, _ = fleets
    importances = fitted.feature_importances_
    assert list(importances) == train.X.feature_names
    assert sum(importances.values()) == pytest.approx(1.0)
    assert min(importances.values()) >= 0
    top = max(importances, key=importances.__getitem__)
    assert top.split("__")[0] in {*train.fault_sensors, "health_index", "age"}


# --- contract -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", list(MAKERS.values()), ids=list(MAKERS))
def test_relabelling_assets_changes_nothing(make: Any, fleets: tuple[Split, Split]) -> None:
    train, test = fleets
    keep = np.flatnonzero(train.X.groups <= 20)  # a smaller fleet: two fits per member
    X, y = train.X.take(keep), train.y.take(keep)
    ids = np.unique(X.groups)
    relabel = dict(zip(ids, np.random.default_rng(0).permutation(ids) + 1000, strict=True))
    X2 = replace(X, groups=np.array([f"engine-{relabel[g]}" for g in X.groups], dtype=object))
    a, b = make(n_estimators=60).fit(X, y), make(n_estimators=60).fit(X2, y)
    np.testing.assert_array_equal(a.predict_rul(test.X), b.predict_rul(test.X))
    np.testing.assert_array_equal(a.predict_proba(test.X), b.predict_proba(test.X))


@pytest.mark.parametrize("make", list(MAKERS.values()), ids=list(MAKERS))
def test_not_fitted_raises(make: Any, fleets: tuple[Split, Split]) -> None:
    _, test = fleets
    member = make()
    with pytest.raises(NotFittedError):
        member.predict_rul(test.X)
    with pytest.raises(NotFittedError):
        member.predict_proba(test.X)


def test_members_satisfy_the_member_protocol() -> None:
    members: list[Member] = [GradientBoostedMember(), RandomForestMember()]
    assert all(callable(m.predict_proba) for m in members)


def test_clone_and_params(fitted: GradientBoostedMember | RandomForestMember) -> None:
    params = fitted.get_params()
    assert params["random_state"] == 0 and params["n_jobs"] == 1
    copy = clone(fitted)
    assert copy.get_params() == params
    assert not hasattr(copy, "regressor_")
    copy.set_params(n_estimators=7)
    assert copy.get_params()["n_estimators"] == 7
    assert fitted.get_params()["n_estimators"] != 7


def test_pickle_round_trip(
    fitted: GradientBoostedMember | RandomForestMember, fleets: tuple[Split, Split]
) -> None:
    _, test = fleets
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.predict_rul(test.X), fitted.predict_rul(test.X))
    np.testing.assert_array_equal(loaded.predict_proba(test.X), fitted.predict_proba(test.X))


def test_refuses_a_different_feature_set(
    fitted: GradientBoostedMember | RandomForestMember, fleets: tuple[Split, Split]
) -> None:
    _, test = fleets
    shuffled = replace(test.X, feature_names=list(reversed(test.X.feature_names)))
    with pytest.raises(SchemaError):
        fitted.predict_rul(shuffled)


@pytest.mark.parametrize("make", list(MAKERS.values()), ids=list(MAKERS))
def test_one_failure_class_is_a_label_error(make: Any, fleets: tuple[Split, Split]) -> None:
    train, _ = fleets
    y = Targets(rul=train.y.rul, failed=np.zeros_like(train.y.failed))
    with pytest.raises(LabelError):
        make().fit(train.X, y)


def test_early_stopping_then_refit_on_all_rows(fleets: tuple[Split, Split]) -> None:
    train, _ = fleets
    member = _small_gbm(n_estimators=400, learning_rate=0.3).fit(train.X, train.y)
    for key, model in (("rul", member.regressor_), ("failed", member.classifier_)):
        rounds = member.best_rounds_[key]
        assert 1 <= rounds < 400  # a high learning rate stops well before the cap
        assert model.get_booster().num_boosted_rounds() == rounds
    positives = train.y.failed.sum()
    assert member.scale_pos_weight_ == pytest.approx((len(train.y.failed) - positives) / positives)
    assert member.device_ == ("cuda" if cuda_available() else "cpu")


def test_without_early_stopping_fits_all_rounds(fleets: tuple[Split, Split]) -> None:
    train, _ = fleets
    member = _small_gbm(n_estimators=20, early_stopping_rounds=None, device="cpu")
    member.fit(train.X, train.y)
    assert member.best_rounds_ == {"rul": 20, "failed": 20}
    assert member.device_ == "cpu"
    with pytest.raises(ValueError, match="device"):
        _small_gbm(device="tpu").fit(train.X, train.y)


def test_booster_predictions_equal_the_scikit_learn_wrappers(fleets: tuple[Split, Split]) -> None:
    """The member predicts through the boosters (faster); the numbers must be the wrapper's."""
    train, held_out = fleets
    member = _small_gbm(n_jobs=2).fit(train.X, train.y)  # trained on two, predicts on one
    features = held_out.X.features.copy()
    features[::7, ::5] = np.nan  # missing values take the same branches
    X = replace(held_out.X, features=features)
    wrapper_rul = np.clip(member.regressor_.predict(features), 0.0, None)
    wrapper_proba = member.classifier_.predict_proba(features)[:, 1]
    np.testing.assert_array_equal(member.predict_rul(X), wrapper_rul)
    np.testing.assert_array_equal(member.predict_proba(X), wrapper_proba)
    for model in (member.regressor_, member.classifier_):
        config = json.loads(model.get_booster().save_config())
        assert config["learner"]["generic_param"]["nthread"] == "1"  # one thread, as serving wants
