"""The Spark engine gives the pandas engine's answers: every feature of every row of C-MAPSS
FD001 and FD002 (rtol 1e-9), a lake's features, and the tiny model's fleet predictions.

One local[2] session for all of them (the ``spark`` fixture); the CLI commands reuse it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from prognos.data.sinks import write_source
from prognos.data.sources import load_source
from prognos.data.validation import validate_readings
from prognos.features import FeaturePipeline
from prognos.fleet import ASSET, TIME
from tests.helpers.cli import run

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from tests.helpers.trained import Trained

pytestmark = [
    pytest.mark.slow,
    # PySpark 4's pandas conversions under pandas 3: its warnings, not prognos's.
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support:FutureWarning"),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]
KEY = [ASSET, TIME]
LOCAL = {"PROGNOS_SPARK_MASTER": "local[2]"}


def _assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = got.sort_values(KEY).reset_index(drop=True)
    expected = expected.sort_values(KEY).reset_index(drop=True)
    assert list(got.columns) == list(expected.columns)
    np.testing.assert_array_equal(got[KEY].to_numpy(), expected[KEY].to_numpy())
    values = [c for c in expected.columns if c not in KEY]
    np.testing.assert_allclose(
        got[values].to_numpy(dtype=np.float64),
        expected[values].to_numpy(dtype=np.float64),
        rtol=1e-9,
        atol=0,
    )


@pytest.mark.parametrize(("name", "rows"), [("FD001", 20_631), ("FD002", 53_759)])
def test_cmapss_features_on_spark_equal_pandas(
    spark: SparkSession, cmapss_dir: Path, tmp_path: Path, name: str, rows: int
) -> None:
    from prognos.cli.features import build_feature_matrix

    # Through parquet: Spark reads the file itself (in splits), as it would a lake.
    data = load_source(f"cmapss:{cmapss_dir / f'train_{name}.txt'}")
    write_source(data, f"parquet:{tmp_path / 'fleet.parquet'}")
    out = tmp_path / "features"
    result = run(
        "--home", tmp_path, "features", "build", f"parquet:{tmp_path / 'fleet.parquet'}",
        "--engine", "spark", "-o", f"parquet:{out}", env=LOCAL,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fitted on every asset" in result.stdout
    assert f"validated {rows:,} rows: {rows:,} valid, 0 quarantined\n" in result.stdout
    got = pd.read_parquet(out)
    expected = build_feature_matrix(data, validate_readings(data.readings, data.spec).valid, None)
    assert len(got) == len(expected.matrix) == rows
    _assert_same_rows(got[list(expected.matrix.columns)], expected.matrix)


def test_lake_features_on_spark_equal_the_lake_source(spark: SparkSession, tmp_path: Path) -> None:
    import pyarrow as pa

    from prognos.data.simulator import SimulatorConfig, simulate_fleet
    from prognos.spark import jobs
    from prognos.spark.sources import read_readings
    from prognos.storage.lake import open_lake, part_name

    sim = simulate_fleet(SimulatorConfig(n_assets=5, seed=4))
    lake = open_lake(str(tmp_path / "lake"))
    lake.write_spec("sim", sim.spec.model_dump(mode="json"))
    lake.write_meta("sim", run_to_failure=True)
    frame = sim.readings.assign(asset_id=sim.readings[ASSET].astype(str))
    frame["received_at"] = pd.Timestamp("2026-01-01", tz="UTC")
    frame["reading_id"] = np.arange(1, len(frame) + 1)
    # Two days, and one reading stored twice (the second copy, with other values, must lose).
    copy = frame.iloc[[10]].assign(sensor_1=frame["sensor_1"].iloc[10] + 1.0, reading_id=10**6)
    halves = [frame.iloc[: len(frame) // 2], pd.concat([frame.iloc[len(frame) // 2 :], copy])]
    for day, half in zip(("2026-01-01", "2026-01-02"), halves, strict=True):
        table = pa.Table.from_pandas(half.reset_index(drop=True), preserve_index=False)
        lake.write_table(f"fleet=sim/date={day}/{part_name(int(half['reading_id'].min()))}", table)
    source = f"lake:{tmp_path / 'lake'}?fleet=sim"

    data = load_source(source)
    valid = validate_readings(data.readings, data.spec).valid
    pipeline = FeaturePipeline(data.spec).fit(valid)
    expected = pd.concat([valid[KEY], pipeline.transform(valid)], axis=1)

    readings = read_readings(spark, source)
    assert readings.run_to_failure
    fitted = jobs.fit_pipeline(readings, max_assets=100)
    np.testing.assert_array_equal(fitted.sensor_mean_, pipeline.sensor_mean_)
    got = jobs.build_features(spark, readings, fitted, assets_per_group=2, n_assets=5).toPandas()
    assert len(got) == len(sim.readings)
    _assert_same_rows(got[list(expected.columns)], expected)


def test_fleet_scoring_on_spark_equals_the_bundle(
    spark: SparkSession, trained: Trained, tmp_path: Path
) -> None:
    import mlflow

    from prognos.registry.tracking import connect

    out = tmp_path / "predictions.csv"
    result = run(
        "--home", trained.home, "predict", "--data", "sim:n_assets=6,seed=12",
        "--model", f"models:/{trained.name}/latest", "--engine", "spark", "-o", f"csv:{out}",
        env=LOCAL,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6 assets predicted" in result.stdout
    got = pd.read_csv(out)
    connect(trained.settings())
    loaded = mlflow.pyfunc.load_model(f"models:/{trained.name}/latest")
    expected = loaded.unwrap_python_model().bundle.predict(trained.fleet)
    expected = expected.sort_values("asset_id").reset_index(drop=True)
    assert list(got.columns) == list(expected.columns)
    for column in ("asset_id", "cycle", "rul_open_above", "alert"):
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy())
    for column in ("rul", "rul_lower", "rul_upper", "failure_probability"):
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-9, atol=0)
