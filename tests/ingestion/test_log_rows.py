"""The service logs readings and predictions without re-checking them (``normalised=True``): these
tests prove the rows it builds are exactly what ``normalise_record`` would make of them."""

from __future__ import annotations

import math
from typing import Any

import pytest

from prognos.features.online import time_key
from prognos.ingestion.loading import load_champion
from prognos.ingestion.predictor import (
    Contribution,
    Explanation,
    Prediction,
    Predictor,
    reading_log_row,
)
from prognos.ingestion.readings import ReadingIn
from prognos.storage.records import normalise_record
from tests.helpers.trained import Trained


def _same(kind: Any, row: dict[str, Any]) -> None:
    normalised = normalise_record(kind, row)
    assert normalised == row
    # Same types too (== treats 1 and 1.0 alike; the database column types do not).
    for key, value in row.items():
        assert type(normalised[key]) is type(value), key


@pytest.fixture(scope="module")
def predictor(trained: Trained) -> Predictor:
    loaded = load_champion(trained.settings(), trained.name)
    return Predictor(loaded.bundle, model_name=loaded.name, model_version=loaded.version)


def test_prediction_log_rows_are_already_normalised(predictor: Predictor, trained: Trained) -> None:
    fleet = predictor.bundle.fleet
    asset = trained.fleet[trained.fleet["asset_id"] == trained.fleet["asset_id"].iloc[0]]
    scored = None
    for _, r in asset.head(5).iterrows():
        reading = {"asset_id": "log-row", "time": int(r["time"])}
        reading |= {c: float(r[c]) for c in (*fleet.setting_names, *fleet.sensor_names)}
        scored = predictor.ingest(reading)
    assert scored is not None
    [prediction] = predictor.score([scored])
    assert prediction.explanation is not None
    _same("prediction", prediction.log_row(latency_ms=1.5))
    _same("prediction", prediction.log_row())


def test_a_missing_feature_value_is_logged_as_null() -> None:
    explanation = Explanation(
        base=-1.0,
        logit=0.5,
        contributions=[Contribution("sequence", math.nan, 1.5, {"sequence": 1.5})],
        other=0.0,
        members={"sequence": 1.2},
    )
    prediction = Prediction(
        asset_id="a",
        time=3,
        failure_probability=0.4,
        risk_level="MEDIUM",
        rul=12.0,
        rul_lower=5.0,
        rul_upper=20.0,
        should_inspect=False,
        model_name="m",
        model_version="1",
        explanation=explanation,
    )
    row = prediction.log_row(2.0)
    assert row["explanation"]["contributions"][0]["value"] is None
    _same("prediction", row)


@pytest.mark.parametrize(
    "time", [{"cycle": 7}, {"timestamp": "2026-02-07T10:00:00+01:00"}], ids=["cycle", "timestamp"]
)
def test_reading_log_rows_are_already_normalised(time: dict[str, Any]) -> None:
    body = ReadingIn.model_validate(
        {
            "equipment_id": "engine_1",
            "sensor_readings": {"sensor_2": 642.5, "sensor_3": 1589},
            "operational_settings": {"setting_1": -0.0007},
            **time,
        }
    )
    reading = body.as_reading()
    row = reading_log_row(reading, "engine_1", time_key(reading["time"]), "fd001")
    _same("reading", row)
    assert row["values"] == {"setting_1": -0.0007, "sensor_2": 642.5, "sensor_3": 1589.0}
