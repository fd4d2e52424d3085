"""``prognos plan``: from a source predicted with the tiny model, and from stored predictions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from prognos.storage import repository
from prognos.storage.database import Database
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.trained import Trained


@pytest.mark.slow
def test_plan_from_a_predicted_source_with_the_champion(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "plan.csv"
    result = run(
        "plan", "--model", trained.name, "--crews", "1", "--days", "3",
        "--data", "sim:n_assets=6,seed=12", "--output", out, "--home", trained.home,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6 assets from sim:n_assets=6,seed=12" in result.stdout
    assert "Inspection plan" in result.stdout and "riskiest-first (probability)" in result.stdout
    assert "the plan saves" in result.stdout
    plan = pd.read_csv(out)
    # Every simulated asset is at its failure cycle: some are worth a visit, one a day at most.
    assert 1 <= len(plan) <= 3
    assert plan["day"].is_unique and plan["day"].between(1, 3).all()
    assert plan["asset_id"].is_unique
    assert (plan["expected_saving"] > 0).all()


def test_plan_from_stored_predictions(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = Database(f"sqlite:///{(home / 'prognos.db')}")
    db.upgrade()
    now = datetime.now(UTC)
    rows = [
        {"asset_id": f"e{i}", "time": 10, "created_at": now, "model_name": "fd", "model_version":
         "2", "failure_probability": p, "risk_level": "high", "rul": rul, "rul_lower": lo,
         "rul_upper": up, "should_inspect": p > 0.04}
        for i, (rul, lo, up, p) in enumerate(
            [(2.0, 0.0, 5.0, 0.99), (6.0, 3.0, 10.0, 0.9), (40.0, 20.0, None, 0.02)]
        )
    ]  # fmt: skip
    repository.insert_predictions(db, rows)
    db.dispose()
    result = run(
        "plan", "--model", "models:/fd@champion", "--crews", "2", "--days", "7", "--home", home,
        env={"PROGNOS_DATABASE_URL": f"sqlite:///{home / 'prognos.db'}"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 assets from stored predictions of fd" in result.stdout
    table = result.stdout.split("Inspection plan")[1].split("Expected cost")[0]
    assert "e0" in table and "e1" in table and "e2" not in table


def test_bad_capacity_and_missing_predictions_are_one_line_errors(tmp_path: Path) -> None:
    assert_one_line_error(
        run("plan", "--model", "x", "--crews", "0", "--days", "5", "--home", tmp_path),
        "crews must be a whole number of at least 1",
    )
    assert_one_line_error(
        run("plan", "--model", "x", "--crews", "1", "--days", "5", "--home", tmp_path),
        "no stored predictions of model 'x'",
    )
