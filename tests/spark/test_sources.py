"""A ``parquet:`` source read by Spark is described as the pandas engine describes it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.data.sinks import write_source
from prognos.data.sources import load_source
from prognos.errors import DataSourceError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def test_a_directory_without_a_spec_sidecar_reads_as_pandas_reads_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Spec inferred from the data, run to failure from the meta sidecar, on both engines."""
    from prognos.spark.sources import read_readings

    folder = tmp_path / "fleet"
    source = f"parquet:{folder}/"
    write_source(simulate_fleet(SimulatorConfig(n_assets=3, seed=2)), source)
    (folder / "spec.yaml").unlink()
    (folder / "meta.yaml").write_text("run_to_failure: false\n")

    pandas = load_source(source)
    readings = read_readings(spark, source)

    assert readings.fleet == pandas.spec and pandas.spec.name == "fleet"
    assert readings.run_to_failure is pandas.run_to_failure is False
    assert readings.events is None and readings.frame.count() == len(pandas.readings)


def test_a_directory_without_data_files_is_a_clear_error(
    spark: SparkSession, tmp_path: Path
) -> None:
    from prognos.spark.sources import read_readings

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match=r"holds no \*\.parquet files"):
        read_readings(spark, f"parquet:{tmp_path / 'empty'}")
