"""Idempotent inserts, the read queries and API keys, on SQLite and (marked) PostgreSQL."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from prognos.errors import ConfigError, StorageError
from prognos.storage import (
    SCOPES,
    Database,
    audit_events,
    create_api_key,
    feedback_labels,
    get_prediction,
    insert_audit,
    insert_feedback,
    insert_predictions,
    insert_readings,
    latest_predictions,
    list_api_keys,
    normalise_record,
    predictions_for_asset,
    readings_for_asset,
    revoke_api_key,
    verify_api_key,
)
from prognos.storage.history import readings_tail
from tests.storage import T0, prediction, reading


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


def count(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


# ----------------------------------------------------------------------------------- inserting


def test_same_reading_twice_is_one_row(db: Database) -> None:
    assert insert_readings(db, [reading(time=1), reading(time=2)]) == 2
    assert insert_readings(db, [reading(time=2), reading(time=3)]) == 1
    assert insert_readings(db, [reading(time=4), reading(time=4)]) == 1  # within one batch too
    assert count(db, "readings") == 4


def test_stored_history_tail_keeps_each_assets_newest_readings(db: Database) -> None:
    insert_readings(db, [reading("A1", t, values={"s2": float(t)}) for t in (5, 1, 4, 2, 3)])
    insert_readings(db, [reading("B7", t, values={"s2": -float(t)}) for t in (2, 1)])
    tail, counts = readings_tail(db, last=3)
    assert list(zip(tail["asset_id"], tail["time"], strict=True)) == [
        ("A1", 3), ("A1", 4), ("A1", 5), ("B7", 1), ("B7", 2),
    ]  # fmt: skip
    assert list(tail["s2"]) == [3.0, 4.0, 5.0, -1.0, -2.0]
    whole, _ = readings_tail(db, last=1_000_000)
    assert list(whole["time"]) == [1, 2, 3, 4, 5, 1, 2]
    assert counts == {"A1": 5, "B7": 2}


def test_readings_round_trip_in_time_order(db: Database) -> None:
    insert_readings(
        db, [reading("A1", t, values={"s2": float(t), "s3": math.nan}) for t in (3, 1, 2)]
    )
    insert_readings(db, [reading("B7", 1)])
    rows = readings_for_asset(db, "A1", limit=2)
    assert [r["time"] for r in rows] == [2, 3]  # the latest two, oldest first
    assert rows[0]["values"] == {"s2": 2.0, "s3": None}  # NaN is stored as null
    assert rows[0]["received_at"] == T0 + timedelta(seconds=2)
    assert rows[0]["received_at"].tzinfo is not None


def test_replayed_predictions_are_not_duplicated(db: Database) -> None:
    rows = [normalise_record("prediction", prediction("A1", t)) for t in range(1, 4)]
    assert insert_predictions(db, rows) == 3
    extra = normalise_record("prediction", prediction("A1", 4))
    assert insert_predictions(db, [*rows, extra]) == 1
    assert count(db, "predictions") == 4


def test_prediction_round_trips(db: Database) -> None:
    row = normalise_record(
        "prediction",
        prediction(
            "A1",
            np.int64(7),  # type: ignore[arg-type]
            failure_probability=np.float32(0.5),
            # A non-UTC offset comes back as the same instant in UTC.
            created_at=datetime(2025, 3, 1, 15, 0, tzinfo=timezone(timedelta(hours=1))),
        ),
    )
    assert row["id"].startswith("pred_")
    insert_predictions(db, [row])
    stored = get_prediction(db, row["id"])
    assert stored is not None
    assert stored["time"] == 7
    assert stored["failure_probability"] == pytest.approx(0.5)
    assert stored["created_at"] == datetime(2025, 3, 1, 14, 0, tzinfo=UTC)
    assert stored["created_at"].utcoffset() == timedelta(0)
    assert stored["explanation"] == [{"feature": "s2_mean", "value": 642.1, "contribution": 0.12}]
    assert stored["should_inspect"] is False
    assert get_prediction(db, "pred_missing") is None
    # The service logs its explanation as one JSON object (base, contributions, other).
    explained = {"model": "xgboost", "base": 0.1, "other": 0.0, "contributions": []}
    row2 = normalise_record("prediction", prediction(asset="A2", explanation=explained))
    insert_predictions(db, [row2])
    stored2 = get_prediction(db, row2["id"])
    assert stored2 is not None and stored2["explanation"] == explained
    with pytest.raises(StorageError, match="explanation"):
        normalise_record("prediction", prediction(explanation="why"))


def test_an_interval_open_above_is_stored_without_an_upper_end(db: Database) -> None:
    """+inf (the model's "more than L cycles") and None are stored as NULL and read as None;
    a NaN upper end is refused rather than stored as an open interval."""
    rows = [
        normalise_record("prediction", prediction("A1", 1, rul_upper=math.inf)),
        normalise_record("prediction", prediction("A2", 1, rul_upper=None)),
        normalise_record("prediction", prediction("A3", 1, rul_upper=130.0)),
    ]
    assert [r["rul_upper"] for r in rows] == [None, None, 130.0]
    insert_predictions(db, rows)
    stored = [get_prediction(db, r["id"]) for r in rows]
    assert [s["rul_upper"] for s in stored if s is not None] == [None, None, 130.0]
    for bad in ("far", math.nan):
        with pytest.raises(StorageError, match="rul_upper"):
            normalise_record("prediction", prediction(rul_upper=bad))


def test_feedback_and_audit_are_idempotent(db: Database) -> None:
    fb = normalise_record("feedback", {"asset_id": "A1", "failure_occurred": True})
    assert fb["id"].startswith("fb_")
    assert insert_feedback(db, [fb]) == 1
    assert insert_feedback(db, [fb]) == 0
    event = normalise_record("audit", {"actor": "ops", "action": "x", "subject": "y"})
    assert insert_audit(db, [event, event]) == 1
    assert insert_audit(db, [event]) == 0
    assert count(db, "feedback") == 1
    assert count(db, "audit_log") == 1


def test_bad_records_are_named() -> None:
    with pytest.raises(StorageError, match="missing: rul"):
        normalise_record("prediction", {k: v for k, v in prediction().items() if k != "rul"})
    with pytest.raises(StorageError, match="unknown fields: colour"):
        normalise_record("reading", {**reading(), "colour": "red"})
    with pytest.raises(StorageError, match="time"):
        normalise_record("reading", {**reading(), "time": 2**64})
    with pytest.raises(StorageError, match="received_at"):
        normalise_record("reading", reading(received_at="yesterday"))
    with pytest.raises(ValueError, match="unknown record kind"):
        normalise_record("bogus", {})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- queries


def test_predictions_for_asset_newest_first(db: Database) -> None:
    insert_predictions(db, [prediction("A1", t) for t in (1, 3, 2)] + [prediction("B1", 9)])
    rows = predictions_for_asset(db, "A1", limit=2)
    assert [r["time"] for r in rows] == [3, 2]
    with pytest.raises(ValueError):
        predictions_for_asset(db, "A1", limit=0)


def test_latest_predictions_rank_each_assets_latest_by_risk(db: Database) -> None:
    insert_predictions(
        db,
        [
            # A was risky once, but its latest prediction is calm: the latest counts.
            prediction("A", 1, failure_probability=0.9),
            prediction("A", 2, failure_probability=0.1),
            prediction("B", 5, failure_probability=0.5),
            prediction("C", 3, failure_probability=0.7),
            # The same time predicted again later (a new model): the newer one counts.
            prediction("D", 4, failure_probability=0.2, created_at=T0),
            prediction("D", 4, failure_probability=0.3, created_at=T0 + timedelta(hours=1)),
        ],
    )
    rows = latest_predictions(db)
    assert [(r["asset_id"], r["failure_probability"]) for r in rows] == [
        ("C", 0.7),
        ("B", 0.5),
        ("D", 0.3),
        ("A", 0.1),
    ]
    assert [r["asset_id"] for r in latest_predictions(db, limit=2)] == ["C", "B"]
    assert set(rows[0]) >= {"id", "rul", "risk_level", "created_at"}
    assert "recency" not in rows[0]


def test_feedback_labels_join_predictions(db: Database) -> None:
    stored = normalise_record("prediction", prediction("A1", 5, rul=12.0, failure_probability=0.8))
    insert_predictions(db, [stored])
    failure_at = datetime(2025, 3, 2, tzinfo=UTC)
    insert_feedback(
        db,
        [
            {
                "prediction_id": stored["id"],
                "asset_id": "A1",
                "failure_occurred": True,
                "failure_time": failure_at,
                "failure_type": "bearing",
                "created_at": T0 + timedelta(days=1),
                "submitted_by": "ops",
            },
            # Its prediction is still spooled somewhere: no prediction columns yet.
            {"prediction_id": "pred_spooled", "asset_id": "A2", "failure_occurred": False},
            {"asset_id": "A3", "failure_occurred": False, "created_at": T0},
        ],
    )
    labels = feedback_labels(db).set_index("asset_id")
    assert len(labels) == 3
    a1 = labels.loc["A1"]
    assert a1["predicted_rul"] == 12.0
    assert a1["predicted_failure_probability"] == pytest.approx(0.8)
    assert a1["prediction_time"] == 5
    assert bool(a1["failure_occurred"]) is True
    assert a1["failure_time"] == pd.Timestamp(failure_at)
    assert a1["failure_type"] == "bearing"
    assert labels.loc["A2", "prediction_id"] == "pred_spooled"
    assert math.isnan(labels.loc["A2", "predicted_rul"])
    assert pd.isna(labels.loc["A3", "prediction_id"])
    for column in ("created_at", "failure_time"):
        dtype = labels[column].dtype
        assert isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"


def test_feedback_labels_of_nothing_has_the_columns(db: Database) -> None:
    labels = feedback_labels(db)
    assert labels.empty
    assert {"asset_id", "prediction_id", "predicted_rul", "failure_occurred"} <= set(labels)


def test_feedback_keeps_the_failure_cycle(db: Database) -> None:
    """A cycle past 2**31 on purpose: the column is a BIGINT, like the readings' time."""
    insert_feedback(
        db,
        [
            {"asset_id": "A1", "failure_occurred": True, "failure_cycle": 2**40},
            {"asset_id": "A2", "failure_occurred": False, "created_at": T0},
        ],
    )
    labels = feedback_labels(db).set_index("asset_id")
    assert labels.loc["A1", "failure_cycle"] == 2**40
    assert pd.isna(labels.loc["A2", "failure_cycle"])
    assert str(labels["failure_cycle"].dtype) == "Int64"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("failure_cycle", 2**63, "does not fit in 64 bits"),
        ("failure_cycle", "soon", "is not an integer"),
        ("notes", "ok\x00", "notes: text must not contain NUL"),
        ("failure_type", "a\x00", "failure_type: text must not contain NUL"),
    ],
)
def test_feedback_storage_would_refuse_is_refused_when_made(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(StorageError, match=message):
        normalise_record("feedback", {"asset_id": "A1", "failure_occurred": True, field: value})


def test_audit_events_newest_first(db: Database) -> None:
    insert_audit(
        db,
        [
            {"actor": "a", "action": "first", "subject": "s", "at": T0},
            {"actor": "a", "action": "second", "subject": "s", "at": T0 + timedelta(1)},
        ],
    )
    assert [e["action"] for e in audit_events(db, limit=5)] == ["second", "first"]


# ------------------------------------------------------------------------------------ API keys


def test_api_key_create_and_verify(db: Database) -> None:
    key, info = create_api_key(db, "dashboard", ["read", "predict"], rate_limit_per_minute=120)
    assert key.startswith("pk_")
    assert len(key) > 40
    assert info.scopes == frozenset({"read", "predict"})
    assert not hasattr(info, "key_hash")

    verified = verify_api_key(db, key)
    assert verified is not None
    assert verified.name == "dashboard"
    assert verified.scopes == frozenset({"read", "predict"})
    assert verified.rate_limit_per_minute == 120
    assert verified.allows("read")
    assert not verified.allows("admin")

    assert verify_api_key(db, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert verify_api_key(db, "pk_" + "x" * 43) is None
    assert verify_api_key(db, "") is None
    assert verify_api_key(db, "Bearer nonsense") is None

    admin_key, admin = create_api_key(db, "root", ["admin"])
    assert admin.rate_limit_per_minute is None
    assert admin.allows("ingest")
    assert verify_api_key(db, admin_key) == admin


def test_only_the_hash_is_stored(db: Database) -> None:
    key, _ = create_api_key(db, "svc", ["predict"])
    with db.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM api_keys")).mappings().one()
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert row["prefix"] == key[3:11]
    assert all(key not in str(value) for value in row.values())
    with db.engine.connect() as conn:
        audit = conn.execute(sa.text("SELECT details FROM audit_log")).scalars().all()
    assert all(key not in str(value) for value in audit)


def test_revoked_key_no_longer_verifies(db: Database) -> None:
    key, _ = create_api_key(db, "temp", ["ingest"])
    other, _ = create_api_key(db, "kept", ["ingest"])
    revoked = revoke_api_key(db, "temp", actor="admin-key")
    assert revoked.revoked_at is not None
    assert verify_api_key(db, key) is None
    assert verify_api_key(db, other) is not None
    assert revoke_api_key(db, "temp").revoked_at == revoked.revoked_at  # idempotent
    listed = {k.name: k for k in list_api_keys(db)}
    assert listed["temp"].revoked_at is not None
    assert listed["kept"].revoked_at is None
    actions = [(e["action"], e["subject"], e["actor"]) for e in audit_events(db)]
    assert actions.count(("api_key.revoke", "temp", "admin-key")) == 1
    assert ("api_key.create", "temp", "cli") in actions
    with pytest.raises(ConfigError, match="no API key named 'ghost'"):
        revoke_api_key(db, "ghost")


def test_bad_key_requests_are_config_errors(db: Database) -> None:
    with pytest.raises(ConfigError, match="unknown API key scope\\(s\\): superuser"):
        create_api_key(db, "x", ["read", "superuser"])
    with pytest.raises(ConfigError, match="at least one scope"):
        create_api_key(db, "x", [])
    with pytest.raises(ConfigError, match="non-empty name"):
        create_api_key(db, "  ", ["read"])
    with pytest.raises(ConfigError, match="rate limit"):
        create_api_key(db, "x", ["read"], rate_limit_per_minute=0)
    create_api_key(db, "x", ["read"])
    with pytest.raises(ConfigError, match="'x' already exists"):
        create_api_key(db, "x", sorted(SCOPES))
    assert [k.name for k in list_api_keys(db)] == ["x"]
