"""The retraining data set: original data plus stored lives labelled by feedback, on SQLite under
tmp_path; its content hash and its snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prognos.config import Settings, get_settings
from prognos.errors import DataSourceError, DataValidationError, LabelError
from prognos.fleet import FleetSpec, SensorSpec
from prognos.storage import Database, insert_feedback, insert_readings
from prognos.training.retrain_data import (
    RetrainingSet,
    build_retraining_set,
    content_hash,
    load_snapshot,
)

SPEC = FleetSpec(
    name="pumps", sensors=[SensorSpec(name="s1"), SensorSpec(name="s2", min=0, max=100)]
)
FLEET = "pumps"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return get_settings(home=tmp_path / "home")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/prognos.db")
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def original(tmp_path: Path) -> str:
    """Three run-to-failure assets "1".."3" (10, 12 and 8 cycles) as CSV with the spec beside."""
    rows = [(a, t, float(t), 50.0) for a, n in ((1, 10), (2, 12), (3, 8)) for t in range(1, n + 1)]
    path = tmp_path / "orig" / "fleet.csv"
    path.parent.mkdir()
    pd.DataFrame(rows, columns=["asset_id", "time", "s1", "s2"]).to_csv(path, index=False)
    SPEC.to_yaml(path.parent / "fleet.spec.yaml")
    return f"csv:{path}"


def store(db: Database, asset: str, cycles: range, fleet: str = FLEET, **bad: float) -> None:
    insert_readings(
        db,
        [
            {"fleet": fleet, "asset_id": asset, "time": t,
             "values": {"s1": float(t), "s2": bad.get(f"s2_at_{t}", 40.0)}}
            for t in cycles
        ],
    )  # fmt: skip


def report(db: Database, asset: str, cycle: int, event: str, **extra: Any) -> None:
    insert_feedback(
        db,
        [{"fleet": FLEET, "asset_id": asset, "event": event, "failure_cycle": cycle,
          "failure_occurred": event == "failure", **extra}],
    )  # fmt: skip


@pytest.fixture
def history(db: Database) -> Database:
    """P1 fails at 15 and is replaced then (a second life 16..40); P2 (1..10) never fails and
    has an out-of-range reading; "1" (a stored id equal to an original one) fails at 5; readings
    of another fleet are never read."""
    store(db, "P1", range(1, 41))
    report(db, "P1", 15, "failure")
    report(db, "P1", 15, "replacement")
    store(db, "P2", range(1, 11), s2_at_3=500.0)
    store(db, "1", range(1, 6))
    report(db, "1", 5, "failure")
    report(db, "1", 5, "failure")  # reported twice
    store(db, "P9", range(1, 50), fleet="other")
    return db


def build(settings: Settings, db: Database, original: str | None) -> RetrainingSet:
    return build_retraining_set(
        settings, db, SPEC, FLEET, original_source=original, horizon=3, rul_cap=6
    )


def rows_of(result: RetrainingSet, asset: str) -> pd.DataFrame:
    mine = (result.readings["asset_id"] == asset).to_numpy()
    return pd.concat([result.readings[mine], result.labels[mine]], axis=1)


def test_the_set_joins_original_data_and_stored_lives(
    settings: Settings, history: Database, original: str
) -> None:
    result = build(settings, history, original)
    assert list(result.readings.columns) == SPEC.columns
    assert result.labels.index.equals(result.readings.index)
    assert list(result.labels.columns) == ["rul", "rul_capped", "failure_within_h"]
    ids = set(result.readings["asset_id"])
    assert {"orig:1", "orig:2", "orig:3", "stored:1:0", "stored:P1:0", "stored:P1:1"} <= ids
    # Run to failure: the original's labels are as in training.
    assert rows_of(result, "orig:1")["rul"].tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    # The failure labels P1's first life exactly; its second life keeps 16..34 (followed >= 6).
    first = rows_of(result, "stored:P1:0")
    assert (first["rul"] == 15 - first["time"]).all() and len(first) == 15
    second = rows_of(result, "stored:P1:1")
    assert second["time"].tolist() == list(range(16, 35))
    assert (second["rul_capped"] == 6).all() and (second["failure_within_h"] == 0).all()
    # Groups are the physical assets: the stored "1" is not the original "1".
    groups = result.groups.groupby(result.readings["asset_id"].to_numpy()).first()
    assert groups["stored:P1:0"] == groups["stored:P1:1"] == "stored:P1"
    assert groups["orig:1"] == "orig:1" != groups["stored:1:0"]
    c = result.counts
    assert (c["original_assets"], c["original_rows"], c["original_quarantined"]) == (3, 30, 0)
    assert (c["stored_assets"], c["stored_rows"], c["stored_quarantined"]) == (3, 55, 1)
    assert (c["lives_failed"], c["lives_negative"], c["lives_censored"]) == (2, 2, 0)
    assert c["rows_negative"] == 19 + 3  # P2 keeps 1, 2, 4 (3 was quarantined)
    assert (c["feedback_rows"], c["feedback_events"], c["feedback_duplicates"]) == (4, 3, 1)
    assert c["training_rows"] == len(result.readings) == 30 + 15 + 19 + 3 + 5
    assert result.report.quarantined_rows == 1 and result.report.total_rows == 85


def test_the_hash_is_stable_and_follows_the_labels(
    settings: Settings, history: Database, original: str
) -> None:
    first = build(settings, history, original)
    assert build(settings, history, original).content_hash == first.content_hash
    changed = first.labels.copy()
    changed.loc[0, "rul_capped"] += 1
    assert content_hash(first.readings, changed, SPEC) != first.content_hash
    report(history, "P2", 30, "inspection")  # P2 now known healthy for longer
    later = build(settings, history, original)
    assert later.content_hash != first.content_hash
    assert later.counts["rows_negative"] > first.counts["rows_negative"]


def test_a_snapshot_materialises_the_set_again(
    settings: Settings, history: Database, original: str
) -> None:
    result = build(settings, history, original)
    path = result.snapshot()
    assert path == settings.home / "snapshots" / result.content_hash
    assert {p.name for p in path.iterdir()} == {"readings.parquet", "labels.parquet",
                                                 "manifest.json"}  # fmt: skip
    again = load_snapshot(path)
    pd.testing.assert_frame_equal(again.readings, result.readings)
    pd.testing.assert_frame_equal(again.labels, result.labels)
    pd.testing.assert_series_equal(again.groups, result.groups, check_names=False)
    assert again.content_hash == result.content_hash
    assert (again.counts, again.source, again.fleet, again.spec) == (
        result.counts, original, FLEET, SPEC,
    )  # fmt: skip
    assert result.snapshot() == path  # already there: kept
    labels = pd.read_parquet(path / "labels.parquet")
    labels.loc[0, "rul"] = 99.0
    labels.to_parquet(path / "labels.parquet", index=False)
    with pytest.raises(DataSourceError, match="is damaged"):
        load_snapshot(path)


def test_stored_lives_alone_and_nothing_at_all(settings: Settings, db: Database) -> None:
    with pytest.raises(DataValidationError, match="nothing to retrain fleet 'pumps' on"):
        build(settings, db, None)
    store(db, "P1", range(1, 11))
    report(db, "P1", 10, "failure")
    alone = build(settings, db, None)
    assert set(alone.readings["asset_id"]) == {"stored:P1:0"}
    assert alone.labels["rul"].tolist() == [float(10 - t) for t in range(1, 11)]


def test_a_timestamped_fleet_counts_hours(settings: Settings, db: Database) -> None:
    spec = SPEC.model_copy(update={"time_kind": "timestamp"})
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = pd.date_range(start, periods=8, freq="h")
    insert_readings(
        db,
        [{"fleet": FLEET, "asset_id": "T", "time": int(t.value), "values": {"s1": 1.0, "s2": 2.0}}
         for t in times],
    )  # fmt: skip
    insert_feedback(
        db,
        [{"fleet": FLEET, "asset_id": "T", "failure_occurred": True,
          "failure_time": times[5].to_pydatetime()}],
    )  # fmt: skip
    result = build_retraining_set(
        settings, db, spec, FLEET, original_source=None, horizon=2, rul_cap=4
    )
    assert result.labels["rul"].tolist() == [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    assert result.readings["time"].dtype == np.dtype("datetime64[ns]")
    assert load_snapshot(result.snapshot()).content_hash == result.content_hash


def test_a_retrained_model_retrains_from_its_snapshot(
    settings: Settings, history: Database, original: str
) -> None:
    """A challenger's source is its snapshot: the next set takes the snapshot's original rows
    and reads the stored lives again, with the feedback that came since (never twice)."""
    first = build(settings, history, original)
    source = f"snapshot:{first.snapshot()}"
    report(history, "P2", 30, "inspection")
    second = build(settings, history, source)
    originals = first.readings["asset_id"].str.startswith("orig:").to_numpy()
    again = second.readings["asset_id"].str.startswith("orig:").to_numpy()
    pd.testing.assert_frame_equal(
        second.readings[again].reset_index(drop=True),
        first.readings[originals].reset_index(drop=True),
    )
    fresh = build(settings, history, original)
    assert second.content_hash == fresh.content_hash != first.content_hash
    assert second.source == source and second.counts["original_rows"] == 30
    with pytest.raises(LabelError, match="another spec, horizon or RUL cap"):
        build_retraining_set(
            settings, history, SPEC, FLEET, original_source=source, horizon=3, rul_cap=7
        )
