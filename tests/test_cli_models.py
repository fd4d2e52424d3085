"""The issue-3 CLI contract end to end on a small simulated fleet: train, predict, evaluate,
models list/promote/rollback, and the gate refusing a worse model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from prognos.cli import app
from prognos.data.labels import truncate_trajectories
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from tests.helpers.configs import QUICK

FAST = {
    **QUICK,
    "members": {
        **QUICK["members"],
        "forest": {"enabled": True, "params": {"n_estimators": 40}},  # the baseline scored too
    },
}


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_train_predict_evaluate_and_manage_versions(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    config = tmp_path / "fast.yaml"
    config.write_text(yaml.safe_dump(FAST))
    _run(
        "simulate",
        "--assets",
        "30",
        "--seed",
        "5",
        "--output",
        f"csv:{tmp_path}/train.csv",
        "--home",
        home,
    )

    out = _run(
        "train",
        "--data",
        f"csv:{tmp_path}/train.csv",
        "--name",
        "tiny",
        "--config",
        str(config),
        "--home",
        home,
    )
    assert "registered tiny version 1" in out and "promoted to champion" in out
    assert "ensemble" in out and "mlflow ui --backend-store-uri" in out

    test_fleet = simulate_fleet(SimulatorConfig(n_assets=15, seed=99))
    cut, truth = truncate_trajectories(test_fleet.readings, seed=3, max_rul=120)
    cut.to_csv(tmp_path / "test.csv", index=False)
    (tmp_path / "test.spec.yaml").write_text(
        yaml.safe_dump(test_fleet.spec.model_dump(mode="json"))
    )
    (tmp_path / "truth.txt").write_text("\n".join(str(int(v)) for v in truth))

    _run(
        "predict",
        "--data",
        f"csv:{tmp_path}/test.csv",
        "--model",
        "models:/tiny@champion",
        "--output",
        str(tmp_path / "preds.csv"),
        "--home",
        home,
    )
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert list(preds.columns) == [
        "asset_id",
        "cycle",
        "rul",
        "rul_lower",
        "rul_upper",
        "rul_open_above",
        "failure_probability",
        "alert",
    ]
    assert len(preds) == 15 and (preds["rul_lower"] <= preds["rul"]).all()
    # An interval open above has an empty upper end (NaN), and only such an interval.
    assert (preds["rul_upper"].isna() == preds["rul_open_above"]).all()
    closed = preds[~preds["rul_open_above"]]
    assert (closed["rul"] <= closed["rul_upper"]).all()
    assert (preds["cycle"].to_numpy() == cut.groupby("asset_id")["time"].max().to_numpy()).all()
    # Predictions track the truth on unseen assets.
    assert preds["rul"].corr(truth.reset_index(drop=True)) > 0.5

    out = _run(
        "evaluate",
        "--data",
        f"csv:{tmp_path}/test.csv",
        "--truth",
        str(tmp_path / "truth.txt"),
        "--model",
        "models:/tiny/1",
        "--home",
        home,
    )
    assert "rmse" in out and "f2" in out and "coverage" in out

    # The gate refuses version 2 on its thresholds, whatever its accuracy: the cheapest training.
    strict = {
        **QUICK,
        "folds": 2,
        "cuts_per_asset": 2,
        "members": {
            "xgboost": {"params": {"n_estimators": 20}},
            "sequence": {"params": {"max_epochs": 1, "hidden": 8}},
        },
        "gate": {"min_f2": 0.999, "min_recall": 0.999, "max_rmse": 0.5},
    }
    config.write_text(yaml.safe_dump(strict))
    out = _run(
        "train",
        "--data",
        f"csv:{tmp_path}/train.csv",
        "--name",
        "tiny",
        "--config",
        str(config),
        "--home",
        home,
    )
    assert "registered tiny version 2" in out and "not promoted" in out
    listing = _run("models", "list", "tiny", "--home", home)
    rows = [line for line in listing.splitlines() if line.startswith("│")]
    assert len(rows) == 2
    assert "champion" in rows[0] and "champion" not in rows[1]  # the gate kept version 1

    _run("models", "promote", "tiny", "2", "--home", home)
    out = _run("models", "rollback", "tiny", "--home", home)
    assert "rolled back to version 1" in out
    from prognos.config import get_settings
    from prognos.storage import repository
    from prognos.storage.database import Database, database_url

    db = Database(database_url(get_settings(home=Path(home))))
    moves = [(e["action"], e["details"]) for e in repository.audit_events(db, 10)]
    db.dispose()
    assert moves[:2] == [
        ("champion_rollback", {"from": 2, "to": 1}),
        ("champion_promote", {"from": 1, "to": 2}),
    ]
    _run(
        "predict",
        "--data",
        f"csv:{tmp_path}/test.csv",
        "--model",
        "models:/tiny/latest",
        "--output",
        str(tmp_path / "latest.csv"),
        "--home",
        home,
    )


def test_predict_with_an_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    _run("simulate", "--assets", "3", "--output", f"csv:{tmp_path}/f.csv", "--home", str(tmp_path))
    result = CliRunner().invoke(
        app,
        [
            "predict",
            "--data",
            f"csv:{tmp_path}/f.csv",
            "--model",
            "models:/nope@champion",
            "--output",
            "x.csv",
            "--home",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "cannot load model models:/nope@champion" in result.output


@pytest.mark.slow
def test_tune_writes_a_config_that_train_takes(tmp_path: Path) -> None:
    """Two Optuna trials on a small fleet: nested MLflow runs, a best config, and train uses it."""
    import mlflow

    from prognos.config import get_settings
    from prognos.registry.tracking import connect
    from prognos.training.config import TrainConfig

    home = str(tmp_path / "home")
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(FAST))
    _run("simulate", "--assets", "12", "--seed", "8", "--output", f"csv:{tmp_path}/t.csv",
         "--home", home)  # fmt: skip
    tuned = tmp_path / "tuned.yaml"
    out = _run(
        "tune", "--data", f"csv:{tmp_path}/t.csv", "--trials", "2", "--budget", "300",
        "--config", str(base), "--output", str(tuned), "--home", home,
    )  # fmt: skip
    assert "2 trials; best ensemble RMSE" in out
    best = TrainConfig.from_yaml(tuned)
    searched = best.members["xgboost"].params
    assert {"learning_rate", "max_depth", "subsample"} <= set(searched)
    assert best.members["xgboost"].params["n_estimators"] == 80  # the base config is kept
    assert best.folds == 3 and best.members["sequence"].params["arch"] in {"lstm", "cnn"}
    assert best.members["sequence"].params["pool"] == 3  # the default the base did not name

    connect(get_settings(home=tmp_path / "home"))
    runs = mlflow.search_runs(experiment_names=["prognos"])
    parents = runs[runs["tags.mlflow.runName"] == "tune-simulated"]
    trials = runs[runs["tags.mlflow.parentRunId"].isin(parents["run_id"])]
    assert len(parents) == 1 and len(trials) == 2
    assert trials["metrics.rmse"].notna().all()
    # Trial 0 is the base configuration itself (its effective values), so the study says
    # whether the search beat it on the same folds.
    assert "the base configuration's (trial 0, same folds)" in " ".join(out.split())
    first = trials.sort_values("start_time").iloc[0]
    assert first["params.sequence.hidden"] == "16"  # FAST's, not the estimator default
    assert first["params.xgboost.learning_rate"] == "0.1"  # the estimator's default

    out = _run("train", "--data", f"csv:{tmp_path}/t.csv", "--name", "tuned", "--config",
               str(tuned), "--home", home)  # fmt: skip
    assert "registered tuned version 1" in out
