"""The cut-point training set on Spark gives the pandas training path's rows: labels from an event
log as retraining labels its lives, and the network's windows as ``model_input`` builds them.

One local[2] session for all of them (the ``spark`` fixture); a small feature set keeps the
rows narrow (the features' own parity is test_parity's).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from prognos.data.outcomes import life_labels, spec_events
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.data.sinks import write_source
from prognos.data.validation import validate_readings
from prognos.features import FeaturePipeline, FeatureSpec
from prognos.fleet import ASSET, TIME
from prognos.models.bundle import model_input
from prognos.spark.groups import LENGTH, LIFE_GROUP, SEQUENCE

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = [
    pytest.mark.slow,  # Spark jobs: seconds each even on a warm session
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support:FutureWarning"),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]
KEY = [ASSET, TIME]
WINDOW = 30
SMALL = FeatureSpec(windows=[5], aggregations=["mean"], lags=[1], rate_of_change=[], ewma_spans=[])


def _expected(
    readings: pd.DataFrame, labels: pd.DataFrame, pipeline, keys, groups: pd.Series | None = None
) -> pd.DataFrame:
    """The pandas path's features, labels (and lives' assets) and windows of ``readings`` (in
    the order of ``labels`` and ``groups``) at ``keys``' rows."""
    position = pd.Series(np.arange(len(readings)), index=pd.MultiIndex.from_frame(readings[KEY]))
    at = position.loc[list(keys.itertuples(index=False, name=None))].to_numpy()
    X = model_input(pipeline, readings, WINDOW, at)
    frame = pd.concat(
        [
            readings[KEY].iloc[at].reset_index(drop=True),
            pd.DataFrame(X.features, columns=X.feature_names),
            labels.iloc[at].reset_index(drop=True),
        ],
        axis=1,
    )
    if groups is not None:
        frame[LIFE_GROUP] = groups.astype(str).to_numpy()[at]
    frame[SEQUENCE] = list(X.sequences.reshape(len(at), -1))
    frame[LENGTH] = X.lengths
    return frame


def _same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = got.sort_values(KEY).reset_index(drop=True)
    expected = expected.sort_values(KEY).reset_index(drop=True)
    assert got[KEY].astype(str).equals(expected[KEY].astype(str))
    if LIFE_GROUP in expected.columns:
        assert got[LIFE_GROUP].tolist() == expected[LIFE_GROUP].tolist()
    values = [c for c in expected.columns if c not in (*KEY, SEQUENCE, LIFE_GROUP)]
    np.testing.assert_array_equal(
        got[values].to_numpy(dtype=np.float64), expected[values].to_numpy(dtype=np.float64)
    )
    windows = np.stack(list(got[SEQUENCE]))
    assert windows.dtype == np.float32
    np.testing.assert_array_equal(windows, np.stack(list(expected[SEQUENCE])))


def test_run_to_failure_windows_on_spark_equal_the_training_paths(spark: SparkSession) -> None:
    from prognos.data.labels import run_to_failure_labels
    from prognos.spark import jobs
    from prognos.spark.sources import read_readings

    readings = read_readings(spark, "sim:n_assets=4,seed=11")
    data = simulate_fleet(SimulatorConfig(n_assets=4, seed=11))
    valid = validate_readings(data.readings, data.spec).valid.reset_index(drop=True)
    pipeline = FeaturePipeline(data.spec, SMALL).fit(valid)
    rows = jobs.training_set(
        spark, readings, pipeline, cuts=6, max_rul=400.0, seed=5,
        assets_per_group=2, n_assets=4, window=WINDOW,
    ).toPandas()  # fmt: skip
    assert len(rows) == 24 and (rows[LENGTH] < WINDOW).any(), "some windows are padded"
    rule = data.spec.labels
    labels = run_to_failure_labels(valid, rul_cap=rule.rul_cap, horizon=rule.horizon)
    _same(rows, _expected(valid, labels, pipeline, rows[KEY]))


@pytest.mark.parametrize("log", ["sidecar", "given"])
def test_event_log_labels_on_spark_equal_retrainings(
    spark: SparkSession, tmp_path: Path, log: str
) -> None:
    from prognos.errors import LabelError
    from prognos.spark import jobs
    from prognos.spark.sources import read_readings

    data = simulate_fleet(SimulatorConfig(n_assets=5, seed=3, mode="telemetry"))
    source = f"parquet:{tmp_path / 'fleet.parquet'}"
    build = partial(
        jobs.training_set, spark, cuts=8, max_rul=150.0, seed=1, assets_per_group=2, n_assets=5
    )
    valid = validate_readings(data.readings, data.spec).valid.reset_index(drop=True)
    pipeline = FeaturePipeline(data.spec, SMALL).fit(valid)
    if log == "sidecar":  # the readings' own event log: the source's sidecar
        write_source(data, source)
        readings = read_readings(spark, source)
        assert not readings.run_to_failure and readings.events is not None
        given = None
    else:  # no log of its own: labelled only from the one given, even if said to run to failure
        write_source(replace(data, events=None), source)
        readings = read_readings(spark, source)
        assert readings.events is None
        with pytest.raises(LabelError, match="cannot be labelled"):
            build(readings, pipeline)
        with pytest.raises(LabelError, match=r"lacks column\(s\) \['time'\]"):
            build(readings, pipeline, events=data.events.drop(columns=TIME))
        with pytest.raises(LabelError, match="no time"):
            build(readings, pipeline, events=data.events.assign(**{TIME: np.nan}))
        readings, given = replace(readings, run_to_failure=True), data.events
    rows = build(readings, pipeline, window=WINDOW, events=given).toPandas()
    rule = data.spec.labels
    events = spec_events(
        data.events, failure_events=rule.failure_events, reset_events=rule.reset_events
    )
    lives = life_labels(valid, events, horizon=rule.horizon, rul_cap=rule.rul_cap)
    lives_of = rows.groupby(LIFE_GROUP)[ASSET].nunique()
    assert rows[ASSET].str.contains(":").all() and (lives_of > 1).any(), "lives, not assets"
    lived = lives.readings.reset_index(drop=True)
    _same(rows, _expected(lived, lives.labels, pipeline, rows[KEY], lives.groups))
    sample = jobs.sample_assets(spark.createDataFrame(rows), 0.5, seed=3).toPandas()
    kept = set(sample[LIFE_GROUP])
    assert rows[rows[LIFE_GROUP].isin(kept)].shape[0] == len(sample), "whole assets, all lives"
