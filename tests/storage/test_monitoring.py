"""Monitoring runs with their metrics, and the window queries, on SQLite and (marked) PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from prognos.errors import StorageError
from prognos.storage import Database, insert_records
from prognos.storage import monitoring as store
from prognos.storage.monitoring import Metric
from tests.helpers import monitoring as case


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/prognos.db"
    else:
        url = request.getfixturevalue("postgres_url")
    database = Database(url)
    database.upgrade()
    yield database
    database.dispose()


def run_row(minutes: int, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "started_at": case.NOW + timedelta(minutes=minutes),
        "finished_at": case.NOW + timedelta(minutes=minutes, seconds=2),
        "kind": "live",
        "fleet": case.FLEET,
        "model_name": case.MODEL,
        "model_version": case.VERSION,
        "window_start": case.NOW - timedelta(hours=24),
        "window_end": case.NOW,
        "drift_detected": False,
        "share_drifted": 0.25,
        "summary": {"coverage": math.nan, "nested": {"x": [1.5, math.inf]}},
    }
    row.update(overrides)
    return row


def test_a_run_and_its_metrics_are_written_and_read_back(db: Database) -> None:
    metrics = [
        Metric("model_f2_score_current", 0.5),
        Metric("feature_drift_score", 0.12, "sensor_1"),
        Metric("model_recall_current", math.nan),
    ]
    run_id = store.write_run(db, run_row(0), metrics)
    assert run_id.startswith("mon_")
    latest = store.latest_run(db)
    assert latest is not None and latest["id"] == run_id
    assert latest["summary"] == {"coverage": None, "nested": {"x": [1.5, None]}}  # JSON-safe
    assert latest["started_at"] == case.NOW
    assert store.run_metrics(db, run_id) == [
        {"name": "model_f2_score_current", "label": "", "value": 0.5},
        {"name": "feature_drift_score", "label": "sensor_1", "value": 0.12},
        {"name": "model_recall_current", "label": "", "value": None},  # NaN stored as NULL
    ]


def test_a_failing_metric_leaves_no_run_behind(db: Database) -> None:
    with pytest.raises(StorageError):
        store.write_run(db, run_row(0, id="mon_x"), [Metric(None, 1.0)])  # type: ignore[arg-type]
    assert store.latest_run(db) is None


def test_runs_newest_first_with_filters_and_the_latest_per_model(db: Database) -> None:
    old = store.write_run(db, run_row(0), [Metric("model_f2_score_current", 0.1)])
    other = store.write_run(db, run_row(5, fleet="other"), [])
    new = store.write_run(db, run_row(10), [Metric("model_f2_score_current", 0.9)])
    store.write_run(db, run_row(20, kind="batch"), [Metric("model_f2_score_current", 0.0)])
    assert [r["id"] for r in store.list_runs(db, 3, kind="live")] == [new, other, old]
    assert [r["id"] for r in store.list_runs(db, 10, fleet=case.FLEET, kind="live")] == [new, old]
    assert store.latest_run(db, model_name="nobody") is None
    latest = store.latest_runs_by_model(db)
    assert [(r["fleet"], r["id"]) for r in latest] == [("other", other), (case.FLEET, new)]
    assert latest[1]["metrics"] == [{"name": "model_f2_score_current", "label": "", "value": 0.9}]
    with pytest.raises(ValueError, match="limit"):
        store.list_runs(db, 0)


def seed(db: Database) -> None:
    insert_records(
        db,
        {
            "reading": case.reading_rows(),
            "prediction": case.prediction_rows(),
            "feedback": case.feedback_rows(),
            "dead_letter": [
                {
                    "fleet": case.FLEET,
                    "source": "mqtt",
                    "reason": r,
                    "detail": "",
                    "payload": "",
                    "received_at": case.NOW - timedelta(minutes=m),
                }
                for r, m in (("schema", 1), ("schema", 2), ("not_json", 3), ("schema", 60 * 30))
            ],
        },
    )


def test_window_queries_read_one_fleet_and_model_version(db: Database) -> None:
    seed(db)
    insert_records(db, {"reading": [{**case.reading_rows()[0], "fleet": "elsewhere"}]})
    start = case.NOW - timedelta(minutes=10)
    readings = store.window_readings(db, case.FLEET, start, case.NOW, 1000)
    # Received in the last 10 minutes: each asset's last 10 cycles.
    assert len(readings) == 40 and readings.groupby("asset_id")["time"].min().to_dict() == {
        "A": 21, "B": 31, "C": 11, "D": 11,
    }  # fmt: skip
    assert list(readings.columns[:3]) == ["asset_id", "time", "received_at"]
    assert math.isnan(readings.set_index(["asset_id", "time"]).loc[("A", 30), "sensor_2"])
    assert len(store.window_readings(db, case.FLEET, start, case.NOW, 7)) == 7  # the newest

    day = case.NOW - timedelta(days=1)
    predictions = store.window_predictions(db, case.FLEET, case.MODEL, "1", day, case.NOW, 100)
    assert len(predictions) == 12 and "pred_other" not in set(predictions["id"])
    assert predictions["created_at"].is_monotonic_increasing

    feedback = store.window_feedback(db, case.FLEET, ["A", "D", "Z"])
    linked = feedback.set_index("id")["prediction_time"]  # the time of the named prediction
    assert sorted(linked.index) == ["fb_A", "fb_D"]
    assert linked["fb_A"] == 30 and linked.isna()["fb_D"]
    assert store.last_reading_times(db, case.FLEET, case.MODEL, "1", day) == case.REACHED
    counts = store.dead_letter_counts(db, case.FLEET, case.NOW - timedelta(hours=1), case.NOW)
    assert counts == {"schema": 2, "not_json": 1}
