"""Savings of a registered model end to end, with the session's tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prognos.data.sources import load_source
from prognos.errors import LabelError
from prognos.models.decision import bayes_threshold
from prognos.registry.versions import RegistryError
from prognos.reports.business import cv_lives, savings_for_model
from prognos.reports.savings import best_interval
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.trained import Trained
from tests.reports.test_eda import assert_self_contained

pytestmark = pytest.mark.slow  # the session's tiny model takes about 20 s to train


def test_cross_validated_savings_of_the_tiny_model(trained: Trained) -> None:
    result = savings_for_model(trained.settings(), trained.name)
    assert (result.model, result.version) == ("tiny", 1)
    assert (result.cost_missed_failure, result.cost_preventive) == (50_000, 2_000)
    assert result.threshold == pytest.approx(bayes_threshold(50_000, 2_000))
    cv = result.cross_validation
    assert cv.lives == result.training_lives == 24 and cv.left_out == 0
    assert [p.policy for p in cv.policies] == ["run_to_failure", "fixed_interval", "prognos"]
    rtf, fixed, acted = cv.policies
    assert rtf.failures == 24 and rtf.total_cost == 24 * 50_000
    for p in cv.policies:
        assert p.failures + p.preventive_actions == 24
        assert p.life_cycles == rtf.cycles
        assert p.cost_per_cycle == pytest.approx(p.total_cost / p.cycles)
    assert fixed.interval_range is not None  # cross-fitted over the 3 folds
    assert cv.against("run_to_failure").per_cycle == pytest.approx(
        rtf.cost_per_cycle - acted.cost_per_cycle
    )
    assert cv.against("fixed_interval").per_cycle == pytest.approx(
        fixed.cost_per_cycle - acted.cost_per_cycle
    )
    assert result.scored is None
    json.dumps(result.model_dump(mode="json"))  # what the dashboard sends


def test_a_scored_fleet_uses_the_interval_chosen_on_the_training_lives(trained: Trained) -> None:
    import mlflow

    settings = trained.settings()
    result = savings_for_model(settings, "tiny/1", data=load_source("sim:n_assets=6,seed=12"))
    client = mlflow.tracking.MlflowClient()
    run_id = client.get_model_version("tiny", "1").run_id
    oof_path = client.download_artifacts(run_id, "oof_predictions.csv")
    import pandas as pd

    lives = cv_lives(pd.read_csv(oof_path), "alert@ensemble")
    assert result.interval == best_interval(lives["length"], 50_000, 2_000)
    scored = result.scored
    assert scored is not None and not scored.in_sample
    assert scored.lives == 6
    fleet = trained.fleet.groupby("asset_id")["time"].max()
    assert scored.policy("run_to_failure").cycles == fleet.sum()
    assert scored.policy("fixed_interval").interval == result.interval
    acted = scored.policy("prognos")
    assert acted.failures + acted.preventive_actions == 6


def test_the_training_data_is_flagged_in_sample(trained: Trained) -> None:
    result = savings_for_model(
        trained.settings(), "tiny@champion", data=load_source("sim:n_assets=24,seed=11")
    )
    assert result.scored is not None and result.scored.in_sample
    assert any("in-sample" in note for note in result.scored.notes)


def test_bad_inputs_give_clear_errors(trained: Trained) -> None:
    settings = trained.settings()
    with pytest.raises(RegistryError, match="no registered model named 'nope'"):
        savings_for_model(settings, "nope")
    with pytest.raises(RegistryError, match="no version 99"):
        savings_for_model(settings, "tiny/99")
    telemetry = load_source("sim:n_assets=4,seed=1,mode=telemetry")
    with pytest.raises(LabelError, match="no known outcome per life"):
        savings_for_model(settings, "tiny", data=telemetry)


def test_cli_savings(trained: Trained, tmp_path: Path) -> None:
    html = tmp_path / "savings.html"
    result = run("--home", trained.home, "report", "savings", "--model", "tiny", "-o", html)
    assert result.exit_code == 0, result.output
    for text in ("run to failure", "best fixed interval", "act on prognos alerts", "savings"):
        assert text in result.stdout
    page = html.read_text()
    assert_self_contained(page)
    assert "Cross-validation" in page and "What the figures assume" in page

    as_json = run("--home", trained.home, "report", "savings", "--model", "tiny", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["cross_validation"]["lives"] == 24

    unknown = run("--home", trained.home, "report", "savings", "--model", "nope")
    assert_one_line_error(unknown, "no registered model named 'nope'")
    unlabelled = run(
        "--home",
        trained.home,
        "report",
        "savings",
        "--model",
        "tiny",
        "--data",
        "sim:n_assets=4,seed=1,mode=telemetry",
    )
    assert_one_line_error(unlabelled, "no known outcome per life")
