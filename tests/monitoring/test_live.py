"""One live run over a database built by hand (``tests/helpers/monitoring.py``): every stored
figure against the hand computation, a late label changing them, the report, the drift wiring."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from prognos.config import Settings, get_settings
from prognos.errors import SchemaError
from prognos.monitoring.live import load_monitored, profile_drift, run_live
from prognos.storage import Database, insert_records
from prognos.storage import monitoring as store
from tests.helpers import monitoring as case
from tests.helpers.trained import Trained

MODEL = case.MODEL_FACTS


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = (
        f"sqlite:///{tmp_path}/prognos.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    database = Database(url)
    database.upgrade()
    insert_records(
        database,
        {
            "reading": case.reading_rows(),
            "prediction": case.prediction_rows(),
            "feedback": case.feedback_rows(),
            "dead_letter": [
                {
                    "fleet": case.FLEET,
                    "source": "mqtt",
                    "reason": "out_of_range",
                    "detail": "",
                    "payload": "{}",
                    "received_at": case.NOW - pd.Timedelta(minutes=3),
                }
            ],
        },
    )
    yield database
    database.dispose()


def settings(tmp_path: Path) -> Settings:
    return get_settings(home=tmp_path / "home", monitoring_coverage_min_count=3)


def figures(db: Database, run_id: str) -> dict[tuple[str, str], float | None]:
    return {(m["name"], m["label"]): m["value"] for m in store.run_metrics(db, run_id)}


def test_a_run_stores_every_figure_and_a_late_label_changes_them(
    db: Database, tmp_path: Path
) -> None:
    first = run_live(settings(tmp_path), db, MODEL, now=case.NOW)
    got = figures(db, first.run_id)
    # Data quality: 110 readings x 3 channels, one null sensor_2, one sensor_1 of 150 > 100.
    assert got[("data_readings_total", "")] == 110
    assert got[("data_missing_value_rate", "")] == pytest.approx(1 / 330)
    assert got[("data_missing_value_rate", "sensor_2")] == pytest.approx(1 / 110)
    assert got[("data_outliers_total", "")] == 1 and got[("data_outliers_total", "sensor_1")] == 1
    assert got[("data_dead_letters_total", "out_of_range")] == 1
    assert got[("data_seconds_since_last_reading", "")] == pytest.approx(60.0)
    # Before C's failure is reported: 8 labelled, 3 unlabelled, TP 2, FP 1, FN 0, TN 5.
    assert got[("model_predictions_unlabelled", "")] == 3
    assert got[("model_f2_score_current", "")] == pytest.approx(10 / 11)
    assert got[("model_false_alarm_rate", "")] == pytest.approx(1 / 6)
    assert got[("model_interval_coverage_current", "")] == 1.0
    assert got[("model_interval_coverage_out_of_band", "")] == 1.0  # above 0.97
    assert ("feature_drift_score", "sensor_1") not in got  # no drift check given
    stored = store.latest_run(db)
    assert stored is not None and stored["id"] == first.run_id
    assert stored["summary"]["drift"] == {"available": False, "reason": "no drift check was given"}
    assert stored["window_end"] == case.NOW and stored["fleet"] == case.FLEET

    insert_records(db, {"feedback": [case.LATE_FEEDBACK]})
    second = run_live(settings(tmp_path), db, MODEL, now=case.NOW)
    got = figures(db, second.run_id)
    assert got[("model_predictions_labelled", "")] == 10
    assert got[("model_predictions_positive", "")] == 3
    assert got[("model_predictions_negative", "")] == 7
    assert got[("model_predictions_unlabelled", "")] == 1  # B at 35 stays censored
    assert got[("model_precision_current", "")] == pytest.approx(2 / 3)
    assert got[("model_recall_current", "")] == pytest.approx(2 / 3)
    assert got[("model_f2_score_current", "")] == pytest.approx(2 / 3)
    assert got[("model_false_alarm_rate", "")] == pytest.approx(1 / 7)
    tp, fp, fn = 2.4, 1.6, 1.65
    assert got[("model_f2_score_estimated", "all")] == pytest.approx(
        5 * tp / (5 * tp + 4 * fn + fp)
    )
    assert got[("model_rul_mae_current", "")] == pytest.approx(5.0)
    assert got[("model_interval_coverage_current", "")] == pytest.approx(5 / 6)
    assert got[("model_interval_coverage_out_of_band", "")] == 0.0
    assert [r["id"] for r in store.list_runs(db, 5)] == [second.run_id, first.run_id]


def test_the_report_is_written_under_the_home(db: Database, tmp_path: Path) -> None:
    result = run_live(settings(tmp_path), db, MODEL, now=case.NOW)
    assert result.report_path == tmp_path / "home" / "reports" / "monitoring" / (
        f"{result.run_id}.html"
    )
    page = result.report_path.read_text()
    assert "0.909" in page and "out of band" in page and "sensor_1" in page
    assert store.latest_run(db)["report_path"] == str(result.report_path)  # type: ignore[index]


def test_drift_gets_the_window_with_the_served_rul_and_its_figures_are_stored(
    db: Database, tmp_path: Path
) -> None:
    seen: dict[str, pd.DataFrame] = {}

    def check(readings: pd.DataFrame, predictions: pd.DataFrame) -> Any:
        seen["readings"], seen["predictions"] = readings, predictions
        return SimpleNamespace(
            drift_detected=True,
            share_drifted=0.5,
            columns={
                "sensor_1": SimpleNamespace(score=0.4, threshold=0.1, drifted=True),
                "sensor_2": SimpleNamespace(score=None, threshold=None, drifted=False),
            },
            prediction_drift={"failure_probability_psi": 0.07, "rul_shift_sd": None},
            to_json=lambda: {"drift_detected": True, "share_drifted": 0.5},
        )

    result = run_live(settings(tmp_path), db, MODEL, now=case.NOW, drift=check)
    readings = seen["readings"].set_index(["asset_id", "time"])
    assert list(readings.columns) == ["setting_1", "sensor_1", "sensor_2", "predicted_rul"]
    assert readings.loc[("A", 30), "predicted_rul"] == 3.0  # joined on (asset, time)
    assert math.isnan(readings.loc[("A", 29), "predicted_rul"])
    assert list(seen["predictions"].columns) == ["asset_id", "time", "failure_probability", "rul"]
    assert len(seen["predictions"]) == 11  # one per (asset, time): the newest
    got = figures(db, result.run_id)
    assert got[("feature_drift_score", "sensor_1")] == 0.4
    assert got[("prediction_drift_psi", "")] == 0.07
    assert ("feature_drift_score", "sensor_2") not in got  # not tested: no score
    run = store.latest_run(db)
    assert run is not None and run["drift_detected"] and run["share_drifted"] == 0.5


def test_an_empty_window_still_makes_a_run(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/empty.db")
    db.upgrade()
    result = run_live(settings(tmp_path), db, MODEL, now=case.NOW, drift=lambda r, p: None)
    got = figures(db, result.run_id)
    assert got[("data_readings_total", "")] == 0 and got[("data_missing_value_rate", "")] is None
    assert got[("model_predictions_total", "")] == 0 and got[("model_f2_score_current", "")] is None
    assert result.drift == {"available": False, "reason": "no readings in the window"}


def test_a_failing_drift_check_leaves_quality_and_performance_standing(
    db: Database, tmp_path: Path
) -> None:
    def check(readings: pd.DataFrame, predictions: pd.DataFrame) -> Any:
        raise SchemaError("readings lack column 'sensor_9' that the reference profile needs")

    result = run_live(settings(tmp_path), db, MODEL, now=case.NOW, drift=check)
    assert result.drift["available"] is False and "sensor_9" in result.drift["reason"]
    assert figures(db, result.run_id)[("model_predictions_total", "")] == 11


def test_a_window_over_the_row_limit_says_so(db: Database, tmp_path: Path) -> None:
    capped = get_settings(home=tmp_path / "home", monitoring_max_rows=5)
    result = run_live(capped, db, MODEL, now=case.NOW)
    assert result.quality.readings == 5 and result.performance.counts["predictions"] == 5
    assert len(result.performance.notes) == 2 and "newest" in result.performance.notes[0]


def test_drift_of_the_real_profile_is_stored_per_feature(trained: Trained, tmp_path: Path) -> None:
    """The tiny model's own reference profile: its unseen fleet as received, then with sensor_4
    offset by one fleet-wide standard deviation (many within-regime ones)."""
    settings = trained.settings()
    facts = load_monitored(settings, trained.name)
    check, reason = profile_drift(settings, facts)
    assert check is not None, reason
    db = Database(f"sqlite:///{tmp_path}/drift.db")
    db.upgrade()
    fleet = trained.fleet
    shifted = fleet.assign(sensor_4=fleet["sensor_4"] + fleet["sensor_4"].std())
    runs = {}
    for name, frame in (("clean", fleet), ("shifted", shifted)):
        rows = [
            {
                "fleet": name,
                "asset_id": str(r["asset_id"]),
                "time": int(r["time"]),
                "values": {
                    k: float(v) for k, v in r.items() if k.startswith(("sensor", "setting"))
                },
                "received_at": case.NOW - pd.Timedelta(seconds=len(frame) - i),
            }
            for i, r in enumerate(frame.to_dict("records"))
        ]
        insert_records(db, {"reading": rows})
        runs[name] = run_live(settings, db, facts, fleet=name, drift=check, now=case.NOW)
    clean, drifted = (figures(db, runs[n].run_id) for n in ("clean", "shifted"))
    assert clean[("data_drift_detected", "")] == 0
    assert drifted[("data_drift_detected", "")] == 1
    assert drifted[("feature_drift_detected", "sensor_4")] == 1
    assert (
        drifted[("feature_drift_score", "sensor_4")]
        > drifted[("feature_drift_threshold", "sensor_4")]
        > clean[("feature_drift_score", "sensor_4")]
    )
    assert runs["shifted"].drift["columns"]["sensor_4"]["drifted"] is True
    db.dispose()
