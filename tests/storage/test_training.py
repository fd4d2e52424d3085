"""The reads retraining makes: a fleet's whole history in chunks, its feedback, its newest time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from prognos.storage import Database, insert_feedback, insert_readings
from prognos.storage.training import fleet_feedback, fleet_readings, newest_reading_time
from tests.storage import reading


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = (
        f"sqlite:///{tmp_path}/prognos.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    database = Database(url)
    database.upgrade()
    yield database
    database.dispose()


def test_a_fleet_history_is_read_whole_in_chunks(db: Database) -> None:
    rows = [reading("B", t, fleet="f") for t in range(7, 0, -1)]
    rows += [reading("A", t, fleet="f", values={"s2": float(t), "extra": 1.0}) for t in (2, 1)]
    rows += [reading("A", 9, fleet="other")]
    insert_readings(db, rows)
    frame = fleet_readings(db, "f", chunk_rows=3)  # 9 rows: three chunks, channels differ
    assert frame[["asset_id", "time"]].values.tolist() == [
        ["A", 1], ["A", 2], *[["B", t] for t in range(1, 8)]
    ]  # fmt: skip
    assert frame["time"].dtype == np.int64 and frame["s3"].dtype == np.float64
    assert frame["extra"].tolist()[:2] == [1.0, 1.0]
    assert np.isnan(frame["extra"].to_numpy()[2:]).all()  # B never sends it
    assert np.isnan(frame["s3"].to_numpy()[:2]).all() and frame["s2"].tolist()[:2] == [1.0, 2.0]
    assert fleet_readings(db, "nobody").columns.tolist() == ["asset_id", "time"]
    assert newest_reading_time(db, "f") == 7 and newest_reading_time(db, "nobody") is None


def test_fleet_feedback_carries_the_event(db: Database) -> None:
    insert_feedback(
        db,
        [
            {"fleet": "f", "asset_id": "A", "failure_occurred": True, "failure_cycle": 5},
            {"fleet": "f", "asset_id": "A", "failure_occurred": False, "event": "repair",
             "failure_cycle": 6},
            {"fleet": "other", "asset_id": "A", "failure_occurred": True},
        ],
    )  # fmt: skip
    frame = fleet_feedback(db, "f").sort_values("failure_cycle")
    assert frame["event"].tolist() == ["failure", "repair"]
    assert frame["failure_cycle"].tolist() == [5, 6]
    assert frame["prediction_time"].isna().all()
