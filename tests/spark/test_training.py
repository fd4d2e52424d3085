"""A tabular member trains on a cut-point training set (no JVM: the rows a Spark task returns)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.errors import ConfigError
from prognos.features import FeaturePipeline
from prognos.spark.groups import cut_point_rows
from prognos.spark.training import cut_point_input, fit_member
from prognos.training.config import TrainConfig


def test_xgboost_trains_on_cut_points_and_ranks_failures() -> None:
    data = simulate_fleet(SimulatorConfig(n_assets=30, seed=5))
    pipeline = FeaturePipeline(data.spec).fit(data.readings)
    rows = cut_point_rows(data.readings, pipeline, data.spec, cuts=15, max_rul=150.0, seed=0)
    names = list(pipeline.feature_names_out_)
    config = TrainConfig.model_validate({"members": {"xgboost": {"params": {"n_estimators": 40}}}})
    train = rows[rows["asset_id"] <= 20]
    test = rows[rows["asset_id"] > 20]
    member = fit_member(train, names, config)
    X, y = cut_point_input(test, names)
    rul, proba = member.predict_rul_and_proba(X)
    assert np.isfinite(rul).all() and ((proba >= 0) & (proba <= 1)).all()
    # Learned, not constant: failing rows score higher than healthy ones on unseen assets.
    assert proba[y.failed == 1].mean() > proba[y.failed == 0].mean() + 0.3
    assert np.corrcoef(rul, y.rul)[0, 1] > 0.7


def test_the_sequence_member_cannot_train_on_a_tabular_set() -> None:
    rows = pd.DataFrame({"asset_id": [1], "f": [0.0], "rul_capped": [1.0], "failure_within_h": [1]})
    with pytest.raises(ConfigError, match="windows"):
        fit_member(rows, ["f"], TrainConfig(), name="sequence")


def test_the_network_trains_on_cut_point_windows() -> None:
    data = simulate_fleet(SimulatorConfig(n_assets=24, seed=8))
    pipeline = FeaturePipeline(data.spec).fit(data.readings)
    window = 20
    rows = cut_point_rows(
        data.readings, pipeline, data.spec, cuts=20, max_rul=150.0, seed=0, window=window
    )
    names = list(pipeline.feature_names_out_)
    params = {"hidden": 8, "max_epochs": 12, "epoch_rows": 1_000, "lr": 1e-2, "device": "cpu"}
    params["pool"] = 1  # a 20-reading window read reading by reading (the default pools 3)
    config = TrainConfig.model_validate(
        {"window": window, "members": {"sequence": {"params": params}}}
    )
    train, test = rows[rows["asset_id"] <= 16], rows[rows["asset_id"] > 16]
    member = fit_member(train, names, config, name="sequence")
    X, y = cut_point_input(test, names, window)
    assert X.sequences.shape[:2] == (len(test), window) and X.sequences.shape[2] > 1
    rul, proba = member.predict_rul_and_proba(X)
    assert np.isfinite(rul).all() and ((proba >= 0) & (proba <= 1)).all()
    # Learned from the windows, not constant: unseen assets' RUL ranks with the truth.
    assert np.corrcoef(rul, y.rul)[0, 1] > 0.5
    with pytest.raises(ConfigError, match="window"):
        cut_point_input(test, names, 7)
