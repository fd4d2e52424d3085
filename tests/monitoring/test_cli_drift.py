"""``prognos monitor drift`` and the profile saved at training, on the tiny registered model; the
C-MAPSS acceptance check (FD001 fleet vs FD002's unseen conditions) on a profile fitted here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prognos.data.sources import load_source
from prognos.errors import NotFoundError
from prognos.features import FeaturePipeline
from prognos.monitoring.build import build_profile
from prognos.monitoring.drift import detect_drift
from prognos.monitoring.profile import load_profile
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.trained import Trained

SIM = "sim:n_assets=6,seed=12"  # assets the tiny model never saw, of its design


def test_training_saves_a_profile_with_the_version(trained: Trained) -> None:
    profile = load_profile(trained.settings(), trained.name, "1")
    assert profile.columns[: len(profile.normaliser.sensors)] == profile.normaliser.sensors
    assert "health_index" in profile.columns
    assert profile.features, "the key features of the model are monitored"
    assert profile.predictions is not None and profile.predictions.rows > 0
    assert profile.meta["assets"] == 24
    result = detect_drift(profile, trained.fleet)
    assert not result.drift_detected


def test_a_version_without_a_profile_is_not_found(trained: Trained) -> None:
    with pytest.raises(NotFoundError, match="version 99"):
        load_profile(trained.settings(), trained.name, "99")


def test_monitor_drift_writes_the_json_and_the_report(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "drift"
    args = ("monitor", "drift", "--home", trained.home, "--model", "models:/tiny@champion")
    result = run(*args, "--data", SIM, "--output", out)
    assert result.exit_code == 0, result.output
    assert "no drift" in result.stdout
    document = json.loads((out / "drift.json").read_text())
    assert document["drift_detected"] is False
    assert 0.0 <= document["share_drifted"] <= 1.0
    for column in document["columns"].values():
        assert {"score", "threshold", "drifted"} <= set(column)
    prediction = document["prediction_drift"]
    assert {"failure_probability_psi", "rul_shift"} <= set(prediction)
    assert document["predicted_readings"] > 0
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    for fetched in ("<script", "<link", 'src="http', "url(http"):  # self-contained
        assert fetched not in page


def test_monitor_drift_names_a_model_it_cannot_load(trained: Trained, tmp_path: Path) -> None:
    result = run(
        "monitor", "drift", "--home", trained.home, "--model", "models:/nobody@champion",
        "--data", SIM, "--output", tmp_path,
    )  # fmt: skip
    assert_one_line_error(result, "nobody")


@pytest.mark.slow
def test_cmapss_fd001_is_not_drift_and_fd002_is(cmapss_dir: Path) -> None:
    """The profile of an FD001 model's pipeline (no members needed): the same fleet cut earlier
    in life passes; six operating conditions it never saw do not."""
    train = load_source(f"cmapss:{cmapss_dir / 'train_FD001.txt'}")
    pipeline = FeaturePipeline(train.spec).fit(train.readings)
    profile = build_profile(train.readings, pipeline, resamples=40)
    test = detect_drift(profile, load_source(f"cmapss:{cmapss_dir / 'test_FD001.txt'}").readings)
    assert not test.drift_detected, [c.name for c in test.columns.values() if c.drifted]
    for name in ("train_FD002", "test_FD002"):
        other = detect_drift(profile, load_source(f"cmapss:{cmapss_dir / name}.txt").readings)
        assert other.drift_detected and other.operating_condition["drifted"]
        assert other.operating_condition["share_unseen"] > 0.8
