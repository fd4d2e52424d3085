"""Small fleets against the number of folds: train when each fold's cross-fitted interval can be
finite, refuse up front with a reason when it cannot (issue 10: 3 assets, folds 2 or 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner, Result

from prognos.cli import app
from prognos.data.labels import run_to_failure_labels
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.errors import ConfigError
from prognos.models.base import ModelInput
from prognos.training import cv, members
from prognos.training.config import TrainConfig

FAST: dict[str, Any] = {
    "cuts_per_asset": 4,
    "members": {
        "xgboost": {"params": {"n_estimators": 40}},
        "sequence": {"params": {"max_epochs": 2, "hidden": 8}},
        "forest": {"enabled": False},
    },
}


@pytest.fixture(scope="module")
def three_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-asset run-to-failure fleet as CSV with its spec beside it."""
    folder = tmp_path_factory.mktemp("three")
    result = _cli("simulate", "--assets", "3", "--seed", "0", "--output", f"csv:{folder}/f.csv")
    assert result.exit_code == 0, result.output
    return folder / "f.csv"


def _cli(*args: str | Path) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


def _train(fleet: Path, tmp_path: Path, **overrides: Any) -> Result:
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({**FAST, **overrides}))
    home = tmp_path / "home"
    return _cli("train", "--data", f"csv:{fleet}", "--config", config, "--home", home)


@pytest.mark.parametrize(
    ("folds", "needles"),
    [
        (
            2,
            ["fold 1 holds 2 of them", "4 cut rows from 1 asset", "at least 10 assets for folds=2"],
        ),
        (3, ["fold 1 holds 1 of them", "8 cut rows from 2 asset", "at least 8 assets for folds=3"]),
    ],
)
def test_three_assets_too_few_calibration_rows_refused(
    three_assets: Path, tmp_path: Path, folds: int, needles: list[str]
) -> None:
    """4 cuts per asset leave fewer than the 19 rows a finite 90% interval (two one-sided 95%
    offsets) needs outside a fold."""
    result = _train(three_assets, tmp_path, folds=folds)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: 3 assets cannot fill {folds} cross-validation folds")
    assert "needs at least 19" in lines[0]
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "home" / "mlflow.db").exists()  # refused before anything was logged


def test_refusal_names_a_fold_count_that_works(three_assets: Path, tmp_path: Path) -> None:
    """With 10 cuts, 2 assets outside a fold suffice: 3 folds of 1 asset work, 2 folds do not."""
    result = _train(three_assets, tmp_path, folds=2, cuts_per_asset=10)
    assert result.exit_code == 2, result.output
    assert "at least 4 assets for folds=2: set folds: 3" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_three_assets_train_when_every_fold_can_be_calibrated(
    three_assets: Path, tmp_path: Path
) -> None:
    """3 folds x 10 cuts: 20 rows outside each fold, so it trains and the interval offsets are
    finite (a closed interval, or one open above with a finite lower end)."""
    result = _train(three_assets, tmp_path, folds=3, cuts_per_asset=10)
    assert result.exit_code == 0, result.output
    assert "registered simulated version 1" in result.output
    predictions = tmp_path / "predictions.csv"
    result = _cli(
        "predict",
        "--data",
        f"csv:{three_assets}",
        "--model",
        "models:/simulated/1",
        "--output",
        predictions,
        "--home",
        tmp_path / "home",
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(predictions)
    assert len(frame) == 3
    assert np.isfinite(frame[["rul_lower", "rul"]].to_numpy()).all()
    assert (frame["rul_lower"] <= frame["rul"]).all()
    # Closed intervals end above the estimate; open ones (no upper end) say so.
    upper = frame["rul_upper"].fillna(np.inf)
    assert (frame["rul"] < upper).all()
    assert (frame["rul_upper"].isna() == frame["rul_open_above"]).all()


@pytest.mark.parametrize(
    ("coverage", "outside", "refused"),
    [(0.9, 19, False), (0.9, 18, True), (0.8, 9, False), (0.8, 8, True), (0.95, 38, True)],
)
def test_calibration_rows_rule_at_its_boundary(
    coverage: float, outside: int, refused: bool
) -> None:
    """Each one-sided offset is at q = 1 - (1 - c) / 2: exactly q / (1 - q) rows outside the fold
    pass, one fewer is refused, whatever c is."""
    # Fold 0 holds plenty of rows of asset 0; fold 1 holds ``outside`` rows, one per asset, so
    # only fold 0 (calibrated on fold 1's rows) can fall short.
    scored = [np.zeros(100, dtype=np.int64), np.arange(1, outside + 1, dtype=np.int64)]
    config = TrainConfig(folds=2, cuts_per_asset=1, coverage=coverage)
    if refused:
        with pytest.raises(ConfigError, match=f"leaving {outside} cut rows"):
            cv._check_calibration_rows(scored, config)
    else:
        cv._check_calibration_rows(scored, config)


class _Diverged:
    """A member whose fit 'diverged': NaN RUL for every row."""

    def fit(self, X: ModelInput, y: object) -> _Diverged:
        return self

    def predict_rul_and_proba(self, X: ModelInput) -> tuple[np.ndarray, np.ndarray]:
        n = len(X.features)
        return np.full(n, np.nan), np.full(n, 0.5)


def test_non_finite_member_predictions_are_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NaN prediction stops cross-validation with its member and fold named, before any
    weight, metric or plot sees it."""
    monkeypatch.setattr(members, "make_member", lambda *args: _Diverged())
    fleet = simulate_fleet(SimulatorConfig(n_assets=3, seed=0))
    config = TrainConfig.model_validate(
        {
            "folds": 3,
            "members": {"xgboost": {}, "sequence": {"enabled": False}},
            "ensemble": ["xgboost"],
        }
    )
    with pytest.raises(ConfigError, match="member 'xgboost' predicted non-finite values on fold 1"):
        cv.cross_validate(fleet.readings, run_to_failure_labels(fleet.readings), fleet.spec, config)
