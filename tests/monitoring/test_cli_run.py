"""``prognos monitor run`` on the tiny registered model over the hand-built case, moved to now."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from prognos.cli import monitor_live
from prognos.cli.monitor_live import parse_hours
from prognos.errors import ConfigError
from prognos.storage import Database, insert_records
from prognos.storage import monitoring as store
from tests.helpers import monitoring as case
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.trained import Trained


def moved(rows: list[dict[str, Any]], delta: Any) -> list[dict[str, Any]]:
    """The rows with their arrival times moved by ``delta``."""
    keys = ("created_at", "received_at")
    return [{k: (v + delta if k in keys else v) for k, v in row.items()} for row in rows]


@pytest.fixture
def env(tmp_path: Path, trained: Trained) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    db = Database(url)
    db.upgrade()
    delta = datetime.now(UTC) - case.NOW
    insert_records(
        db,
        {
            "reading": moved(case.reading_rows(), delta),
            "prediction": moved(case.prediction_rows(), delta),
            "feedback": moved([*case.feedback_rows(), case.LATE_FEEDBACK], delta),
        },
    )
    db.dispose()
    return {
        "PROGNOS_HOME": str(trained.home),
        "PROGNOS_DATABASE_URL": url,
        "PROGNOS_MONITORING_COVERAGE_MIN_COUNT": "3",
    }


def test_monitor_run_prints_and_stores_the_run(env: dict[str, str], tmp_path: Path) -> None:
    result = run("monitor", "run", "--model", "tiny", "--fleet", case.FLEET, "--json", env=env)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["model_name"] == "tiny" and out["model_version"] == "1"  # the champion
    assert out["summary"]["model"]["horizon"] == 30  # the tiny model's, not the case's 10
    counts = out["summary"]["performance"]["counts"]
    # With H = 30: A's four predictions, C's two (24 <= t + 30) are failures within the
    # horizon; B at 10 survived it (readings to 40); B 25/35 and D 5/20 are censored.
    assert (counts["positives"], counts["negatives"], counts["unlabelled"]) == (6, 1, 4)
    figures = {(m["name"], m["label"]): m["value"] for m in out["metrics"]}
    assert figures[("data_readings_total", "")] == 110
    assert figures[("model_false_alarm_rate", "")] == 1.0  # B at 10 was an alert
    assert Path(out["report_path"]).is_file()
    db = Database(env["PROGNOS_DATABASE_URL"])
    assert store.latest_run(db)["id"] == out["id"]  # type: ignore[index]
    db.dispose()

    table = run("monitor", "run", "--model", "tiny", "--fleet", case.FLEET, env=env)
    assert table.exit_code == 0, table.output
    assert "realised" in table.stdout and "predictions 11: 7 labelled" in table.stdout
    assert "report ->" in table.stdout


def test_monitor_run_every_repeats_until_interrupted(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(monitor_live.time, "sleep", sleep)
    args = ("monitor", "run", "--model", "tiny", "--fleet", case.FLEET, "--every", "5", "--json")
    result = run(*args, env=env)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 2 and sleeps == [5.0, 5.0]


def test_monitor_run_refuses_a_bad_window_and_an_unknown_model(env: dict[str, str]) -> None:
    result = run("monitor", "run", "--model", "tiny", "--window", "soon", env=env)
    assert_one_line_error(result, "--window", "soon")
    assert_one_line_error(run("monitor", "run", "--model", "nobody", env=env), "nobody")


def test_durations() -> None:
    assert parse_hours("90m", "--window") == 1.5
    assert parse_hours("7d", "--window") == 168
    assert parse_hours("3600s", "--window") == pytest.approx(1.0)
    assert parse_hours("12", "--window") == 12
    with pytest.raises(ConfigError, match="--label-window"):
        parse_hours("0h", "--label-window")
