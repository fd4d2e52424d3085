"""The per-group functions the Spark tasks run, checked in plain pandas (no JVM): a group of
whole assets gives exactly the rows the whole fleet gives for them, in any row order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prognos.data.outcomes import life_labels, spec_events
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.data.validation import validate_readings
from prognos.features import FeaturePipeline
from prognos.fleet import ASSET, TIME
from prognos.models.bundle import model_input
from prognos.spark.groups import (
    ARRIVAL,
    LENGTH,
    LIFE_GROUP,
    SEQUENCE,
    cut_point_rows,
    feature_rows,
    valid_group,
)
from prognos.spark.session import job_error
from prognos.storage.lake import READING_ID


@pytest.fixture(scope="module")
def fleet() -> tuple[pd.DataFrame, FeaturePipeline]:
    data = simulate_fleet(SimulatorConfig(n_assets=8, seed=3))
    readings = data.readings
    return readings, FeaturePipeline(data.spec).fit(readings)


def test_a_group_of_whole_assets_gets_the_whole_fleets_features(fleet) -> None:
    readings, pipeline = fleet
    whole = pd.concat([readings[[ASSET, TIME]], pipeline.transform(readings)], axis=1)
    group = readings[readings[ASSET].isin([2, 5, 7])].sample(frac=1.0, random_state=0)
    group = group.assign(**{ARRIVAL: group.index})  # arrival = the file order, shuffled here
    got = feature_rows(group, pipeline, pipeline.fleet, labels=True)
    expected = whole[whole[ASSET].isin([2, 5, 7])].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_exact=True)
    assert {"rul", "rul_capped", "failure_within_h"} <= set(got.columns)


def test_validation_judges_duplicates_in_arrival_order(fleet) -> None:
    readings, pipeline = fleet
    one = readings[readings[ASSET] == 1].head(5).copy()
    clash = one.iloc[[2]].assign(sensor_1=one["sensor_1"].iloc[2] + 1.0)  # same key, new value
    rows = pd.concat([one, clash], ignore_index=True)
    rows[ARRIVAL] = np.arange(len(rows))
    shuffled = rows.iloc[[5, 0, 3, 1, 4, 2]]
    valid = valid_group(shuffled, pipeline.fleet)
    assert len(valid) == 5
    assert valid["sensor_1"].tolist() == one["sensor_1"].tolist(), "the first arrival stands"
    control = valid_group(rows.iloc[[5, 0, 1, 2, 3, 4]].drop(columns=ARRIVAL), pipeline.fleet)
    assert control["sensor_1"].tolist() != one["sensor_1"].tolist(), "row order decides"


def test_lake_rows_are_deduplicated_by_reading_id(fleet) -> None:
    readings, pipeline = fleet
    one = readings[readings[ASSET] == 4].head(4).copy()
    one[ASSET] = one[ASSET].astype(str)  # the lake stores asset ids as text
    copy = one.iloc[[1]].assign(sensor_2=one["sensor_2"].iloc[1] + 1.0)
    rows = pd.concat([copy, one], ignore_index=True)
    rows[READING_ID] = [10, 1, 2, 3, 4]  # the copy was stored last
    valid = valid_group(rows, pipeline.fleet)
    assert valid["sensor_2"].tolist() == one["sensor_2"].tolist(), "the first stored stands"


def test_cut_points_do_not_depend_on_which_assets_share_a_group(fleet) -> None:
    readings, pipeline = fleet
    spec = pipeline.fleet
    kwargs = {"cuts": 3, "max_rul": 150.0, "seed": 7}
    together = cut_point_rows(readings, pipeline, spec, **kwargs)
    apart = pd.concat(
        [cut_point_rows(g, pipeline, spec, **kwargs) for _, g in readings.groupby(ASSET)],
        ignore_index=True,
    )
    key = [ASSET, TIME]
    together = together.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(together, apart.sort_values(key).reset_index(drop=True))
    assert together.groupby(ASSET).size().eq(3).all()
    assert together["rul"].le(150.0).all()
    # The features at a cut are the full-history features at that row.
    valid = validate_readings(readings, spec).valid
    full = pd.concat([valid[key], pipeline.transform(valid)], axis=1).merge(together[key])
    cols = pipeline.feature_names_out_
    merged = together.sort_values(key).reset_index(drop=True)
    np.testing.assert_array_equal(merged[cols].to_numpy(), full.sort_values(key)[cols].to_numpy())


def test_a_worker_error_is_named_by_its_python_exception() -> None:
    text = (
        "An exception was thrown from the Python worker:\nTraceback (most recent call last):\n"
        "  File \"x.py\", line 1\nprognos.errors.SchemaError: readings lack columns ['sensor_3']\n"
        "\tat org.apache.spark.api.python.BasePythonRunner..."
    )
    assert (
        job_error(RuntimeError(text))
        == "prognos.errors.SchemaError: readings lack columns ['sensor_3']"
    )
    assert job_error(RuntimeError("\nJVM died\nmore")) == "JVM died"


def test_cut_point_windows_are_the_training_paths_windows(fleet) -> None:
    readings, pipeline = fleet
    spec, window = pipeline.fleet, 60
    # Cuts early enough in life (RUL up to 400) that some windows reach back past the first reading.
    rows = cut_point_rows(readings, pipeline, spec, cuts=4, max_rul=400.0, seed=2, window=window)
    valid = validate_readings(readings, spec).valid
    valid = valid.sort_values([ASSET, TIME]).reset_index(drop=True)
    position = pd.Series(
        np.arange(len(valid)), index=pd.MultiIndex.from_frame(valid[[ASSET, TIME]])
    )
    at = position.loc[list(zip(rows[ASSET], rows[TIME], strict=True))].to_numpy()
    expected = model_input(pipeline, valid, window, at)
    got = np.stack(list(rows[SEQUENCE])).reshape(len(rows), window, -1)
    assert got.dtype == np.float32 and got.shape == expected.sequences.shape
    np.testing.assert_array_equal(got, expected.sequences)
    np.testing.assert_array_equal(rows[LENGTH].to_numpy(), expected.lengths)
    assert (rows[LENGTH] < window).any(), "some windows are padded"
    np.testing.assert_array_equal(rows[expected.feature_names].to_numpy(), expected.features)


def test_event_log_fleets_are_labelled_as_retraining_labels_them() -> None:
    data = simulate_fleet(SimulatorConfig(n_assets=6, seed=2, mode="telemetry"))
    rule = data.spec.labels
    events = spec_events(
        data.events, failure_events=rule.failure_events, reset_events=rule.reset_events
    )
    valid = validate_readings(data.readings, data.spec).valid.reset_index(drop=True)
    lives = life_labels(valid, events, horizon=rule.horizon, rul_cap=rule.rul_cap)
    pipeline = FeaturePipeline(data.spec).fit(valid)
    kwargs = {"cuts": 5, "max_rul": 150.0, "seed": 3, "events": events}
    rows = pd.concat(
        [cut_point_rows(g, pipeline, data.spec, **kwargs) for _, g in data.readings.groupby(ASSET)],
        ignore_index=True,
    )
    assert rows[ASSET].str.contains(":").all() and rows[LIFE_GROUP].nunique() > 1
    expected = pd.concat(
        [
            lives.readings[[ASSET, TIME]],
            pipeline.transform(lives.readings),
            lives.labels,
            lives.groups.rename(LIFE_GROUP).astype(str),
        ],
        axis=1,
    ).merge(rows[[ASSET, TIME]])
    key = [ASSET, TIME]
    got = rows.sort_values(key).reset_index(drop=True).astype({LIFE_GROUP: str})
    pd.testing.assert_frame_equal(
        got, expected.sort_values(key).reset_index(drop=True)[list(got.columns)]
    )
    assert len(got) == got.groupby(ASSET).size().clip(upper=5).sum() > 0
