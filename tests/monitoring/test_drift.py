"""The drift engine on simulated fleets: aging is not drift, faults and new conditions are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prognos.data.faults import Fault, apply_sensor_faults
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.errors import SchemaError
from prognos.features import FeaturePipeline
from prognos.monitoring.build import build_profile
from prognos.monitoring.drift import detect_drift
from prognos.monitoring.profile import ReferenceProfile


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    data = simulate_fleet(SimulatorConfig(n_assets=40, seed=101))
    pipeline = FeaturePipeline(data.spec).fit(data.readings)
    return build_profile(data.readings, pipeline, resamples=30, seed=1)


@pytest.fixture(scope="module")
def live() -> pd.DataFrame:
    """Twenty new assets of the same design, whole lives."""
    return simulate_fleet(SimulatorConfig(n_assets=20, seed=201)).readings


def test_a_young_fleet_is_not_drift(profile: ReferenceProfile, live: pd.DataFrame) -> None:
    young = live.groupby("asset_id").head(60)
    result = detect_drift(profile, young)
    assert not result.drift_detected, [c.name for c in result.columns.values() if c.drifted]
    # The batch sits in the early stages, far from the reference's mix: the test compared
    # like with like rather than not seeing the difference.
    late_batch, late_reference = (
        sum(result.stages[k][3:]) for k in ("batch_share", "reference_share")
    )
    assert late_batch < 0.05 < 0.15 < late_reference
    assert result.share_drifted == 0.0


def test_the_same_fleet_over_its_whole_lives_is_not_drift(
    profile: ReferenceProfile, live: pd.DataFrame
) -> None:
    result = detect_drift(profile, live)
    assert not result.drift_detected
    json = result.to_json()
    assert json["drift_detected"] is False and json["share_drifted"] == 0.0
    for column in json["columns"].values():
        assert {"score", "threshold", "drifted"} <= set(column)


def test_an_offset_on_some_assets_is_found_with_the_assets(
    profile: ReferenceProfile, live: pd.DataFrame
) -> None:
    faulty = apply_sensor_faults(live, [Fault("offset", 1, 8, 40, 0.25, "sensor_1")])
    batch = faulty.groupby("asset_id").head(100)
    result = detect_drift(profile, batch)
    column = result.columns["sensor_1"]
    assert result.drift_detected and column.drifted
    assert column.changed_assets and set(column.changed_assets) <= set(range(1, 9))
    assert column.mean_shift is not None and column.mean_shift > 0


@pytest.mark.parametrize("kind", ["noise", "stuck"])
def test_noise_and_a_frozen_sensor_are_found(
    profile: ReferenceProfile, live: pd.DataFrame, kind: str
) -> None:
    size = 0.1 if kind == "noise" else None
    faulty = apply_sensor_faults(live, [Fault(kind, 1, 8, 40, size, "sensor_3")])  # type: ignore[arg-type]
    result = detect_drift(profile, faulty.groupby("asset_id").head(100))
    column = result.columns["sensor_3"]
    assert column.drifted
    dynamics = column.tests["dynamics"]  # what first differences show: noise, a frozen value
    assert dynamics["score"] is not None and dynamics["threshold"] is not None
    assert dynamics["score"] > dynamics["threshold"]


def test_an_unseen_operating_condition_is_counted_apart(
    profile: ReferenceProfile, live: pd.DataFrame
) -> None:
    faulty = apply_sensor_faults(live, [Fault("regime", 1, 10, 30, 0.0)])
    result = detect_drift(profile, faulty)
    condition = result.operating_condition
    assert condition["drifted"] and 0.2 < condition["share_unseen"] < 0.6
    assert all(result.columns[s].drifted for s in ("setting_1", "setting_2", "setting_3"))
    # Readings in the unseen condition stay out of the sensor tests (the shift is 0 by design).
    assert not any(c.drifted for c in result.columns.values() if c.kind == "sensor")


def test_prediction_drift_is_reported_when_predictions_are_given(
    profile: ReferenceProfile, live: pd.DataFrame
) -> None:
    """Without a prediction reference (a profile built without predictions) it says so."""
    predictions = pd.DataFrame(
        {
            "asset_id": live["asset_id"],
            "time": live["time"],
            "failure_probability": np.full(len(live), 0.1),
            "rul": np.full(len(live), 50.0),
        }
    )
    assert detect_drift(profile, live, predictions).prediction_drift is None
    assert detect_drift(profile, live).prediction_drift is None


def test_a_handful_of_readings_is_not_scored(profile: ReferenceProfile, live: pd.DataFrame) -> None:
    result = detect_drift(profile, live.head(20))
    sensors = [c for c in result.columns.values() if c.kind != "setting"]
    assert all(c.score is None and not c.drifted for c in sensors)
    assert not result.drift_detected


def test_missing_columns_are_a_schema_error(profile: ReferenceProfile, live: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="sensor_2"):
        detect_drift(profile, live.drop(columns=["sensor_2"]))


def test_missing_values_do_not_break_the_run(profile: ReferenceProfile, live: pd.DataFrame) -> None:
    holed = live.copy()
    holed.loc[holed.index[::7], "sensor_4"] = np.nan
    result = detect_drift(profile, holed)
    assert result.columns["sensor_4"].score is not None
    assert not result.drift_detected


def test_the_profile_survives_json(profile: ReferenceProfile, live: pd.DataFrame) -> None:
    again = ReferenceProfile.from_json(profile.to_json())
    assert again.columns == profile.columns
    batch = live.groupby("asset_id").head(80)
    assert detect_drift(again, batch).to_json() == detect_drift(profile, batch).to_json()
