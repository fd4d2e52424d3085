"""Validation on Spark keeps its record: the rows the pandas engine quarantines, with the same
row numbers and reasons, and the same counts, from a Parquet directory, a lake and a CSV.

One local[2] session for all of them (the ``spark`` fixture).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prognos.data.dataset import FleetData
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.data.sinks import write_source
from prognos.data.sources import load_source
from prognos.data.validation import ValidationResult, validate_readings
from prognos.fleet import ASSET, TIME
from tests.helpers.cli import run

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = [
    pytest.mark.slow,  # Spark jobs: seconds each even on a warm session
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support:FutureWarning"),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]
LOCAL = {"PROGNOS_SPARK_MASTER": "local[2]"}


def _planted(seed: int = 6) -> FleetData:
    """Three small assets with every kind of bad row validation knows, in file order."""
    data = simulate_fleet(SimulatorConfig(n_assets=3, seed=seed, min_life=40, max_life=60))
    rows = data.readings.copy()
    first = rows.index[rows[ASSET] == 1]
    rows.loc[first[5], "sensor_1"] = np.nan  # missing
    rows.loc[first[9], "sensor_2"] = np.inf  # not finite
    rows.loc[first[12], "sensor_3"] = 1e9  # above its max
    rows.loc[first[12], "sensor_4"] = np.nan  # and missing: two reasons
    second = rows.index[rows[ASSET] == 2]
    conflicting = rows.loc[[second[3]]].assign(sensor_5=rows.loc[second[3], "sensor_5"] + 1.0)
    exact = rows.loc[[second[7]]]
    late = rows.loc[[second[20]]]  # arrives after its asset's later readings: out of order
    after = {second[3]: conflicting, second[7]: exact, second[25]: late}
    parts = []
    for label in rows.index.drop(second[20]):
        parts.append(rows.loc[[label]])
        if label in after:
            parts.append(after[label])
    return FleetData(
        readings=pd.concat(parts, ignore_index=True),
        spec=data.spec,
        source="planted",
        run_to_failure=True,
    )


def _same_quarantine(got: pd.DataFrame, expected: ValidationResult) -> None:
    want = expected.quarantine.reset_index(drop=True)
    got = got.sort_values("row").reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    np.testing.assert_array_equal(got["row"].to_numpy(), want["row"].to_numpy())
    assert got["reason"].tolist() == want["reason"].tolist()
    assert got[ASSET].astype(str).tolist() == want[ASSET].astype(str).tolist()
    values = [c for c in want.columns if c not in ("row", "reason", ASSET)]
    np.testing.assert_array_equal(
        got[values].to_numpy(dtype=np.float64), want[values].to_numpy(dtype=np.float64)
    )


def test_features_build_on_spark_quarantines_what_pandas_does(
    spark: SparkSession, tmp_path: Path
) -> None:
    data = _planted()
    source = _parquet(data, tmp_path / "fleet")
    expected = validate_readings(load_source(source).readings, data.spec)
    report = expected.report
    assert {c.rule for c in report.by_rule} == {
        "missing",
        "duplicate",
        "out_of_order",
        "out_of_range",
    }
    out = tmp_path / "features"
    # A few features (the matrix is not what is checked here): a wide one is slower to write.
    small = tmp_path / "features.yaml"
    small.write_text(
        "windows: [5]\naggregations: [mean]\nlags: [1]\nrate_of_change: []\newma_spans: []\n"
    )
    result = run(
        "--home", tmp_path, "features", "build", source, "--engine", "spark",
        "--features", small, "-o", f"parquet:{out}", env=LOCAL,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rules = ", ".join(f"{c.rule} {c.rows}" for c in report.by_rule)
    line = (
        f"validated {report.total_rows} rows: {report.valid_rows} valid, "
        f"{report.quarantined_rows} quarantined ({rules}) ->"
    )
    assert line in result.stdout
    _same_quarantine(pd.read_parquet(f"{out}.quarantine"), expected)
    assert len(pd.read_parquet(out)) == report.valid_rows


@pytest.mark.parametrize("kind", ["parquet", "csv", "lake"])
def test_quarantine_rows_are_numbered_as_the_source_reads_them(
    spark: SparkSession, tmp_path: Path, kind: str
) -> None:
    from prognos.spark.quarantine import quarantine, quarantine_counts
    from prognos.spark.sources import read_readings

    data = _planted(seed=9)
    if kind == "parquet":
        source = _parquet(data, tmp_path / "fleet")
    elif kind == "csv":
        source = f"csv:{tmp_path / 'fleet.csv'}"
        write_source(data, source)
    else:
        source = _lake(data, tmp_path / "lake")
    expected = validate_readings(load_source(source).readings, data.spec)
    # Small splits: each file's row groups are read by partitions of their own, so the numbers
    # run across files and partitions as pandas counts them.
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    try:
        readings = read_readings(spark, source)
        if kind == "parquet":
            assert readings.frame.rdd.getNumPartitions() > 2
        held = quarantine(spark, readings, assets_per_group=2, n_assets=3).cache()
        total, by_rule = quarantine_counts(held)
        _same_quarantine(held.toPandas(), expected)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert total == expected.report.quarantined_rows
    assert by_rule == {c.rule: c.rows for c in expected.report.by_rule}


def _parquet(data: FleetData, folder: Path) -> str:
    """The fleet as two Parquet files (read in name order), in row groups of 40 rows."""
    write_source(data, f"parquet:{folder}/")
    table = pq.read_table(folder / "part-0.parquet")
    (folder / "part-0.parquet").unlink()
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), folder / "a.parquet", row_group_size=40)
    pq.write_table(table.slice(half), folder / "b.parquet", row_group_size=40)
    return f"parquet:{folder}"


def _lake(data: FleetData, root: Path) -> str:
    """The fleet in a lake over two date partitions, asset ids as text (the lake's). A lake keeps
    one row per (asset, time): its duplicates are dropped as read, the rest validated."""
    from prognos.storage.lake import open_lake, part_name

    lake = open_lake(str(root))
    lake.write_spec("sim", data.spec.model_dump(mode="json"))
    lake.write_meta("sim", run_to_failure=True)
    frame = data.readings.assign(**{ASSET: data.readings[ASSET].astype(str)})
    frame["received_at"] = pd.Timestamp("2026-01-01", tz="UTC")
    frame["reading_id"] = np.arange(1, len(frame) + 1)
    frame[TIME] = frame[TIME].astype("int64")
    halves = [frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :]]
    for day, half in zip(("2026-01-01", "2026-01-02"), halves, strict=True):
        table = pa.Table.from_pandas(half.reset_index(drop=True), preserve_index=False)
        lake.write_table(f"fleet=sim/date={day}/{part_name(int(half['reading_id'].min()))}", table)
    return f"lake:{root}?fleet=sim"
