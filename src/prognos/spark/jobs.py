"""The batch jobs on Spark: fit the pipeline on the driver, then features, fleet scoring and the
cut-point training set per group of whole assets (``groupBy(...).applyInPandas``).

Groups are buckets of whole assets (a hash of the asset id), not single assets: a group is
built in one vectorised pandas call (1,000 assets as 1,000 calls took 150 s, as 4 groups 76 s:
``bench/bench_spark.py --grouping``). The fitted pipeline or bundle goes to the workers as a
broadcast variable (classic Spark) or inside the function (Spark Connect, which has none).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from prognos.fleet import ASSET, TIME
from prognos.spark.groups import (
    ARRIVAL,
    LABELS,
    SOURCE_FILE,
    cut_point_rows,
    feature_rows,
    prediction_rows,
    valid_group,
)
from prognos.spark.sources import SparkReadings
from prognos.storage.lake import READING_ID

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

    from prognos.features import FeaturePipeline, FeatureSpec
    from prognos.models.bundle import ModelBundle

T = TypeVar("T")
_HASH_SPAN = 1_000_000


def count_assets(readings: SparkReadings) -> int:
    """Distinct assets (one pass over the asset column)."""
    return int(readings.frame.select(ASSET).distinct().count())


def sample_assets(frame: DataFrame, fraction: float, seed: int = 0) -> DataFrame:
    """Rows of about ``fraction`` of the assets, chosen by a hash of the asset id: whole assets,
    the same ones on every run."""
    if fraction >= 1.0:
        return frame
    return frame.where(_asset_hash(seed) < int(fraction * _HASH_SPAN))


def fit_pipeline(
    readings: SparkReadings,
    feature_spec: FeatureSpec | None = None,
    *,
    max_assets: int,
    n_assets: int | None = None,
) -> FeaturePipeline:
    """Fit on the driver: on every asset when the fleet has at most ``max_assets`` (then it is
    the pandas engine's pipeline), else on a sample of about ``max_assets`` assets by hash
    (regimes, per-regime means and scales and the health index are fleet statistics that a
    few thousand whole assets estimate well). The sample is collected to the driver."""
    from prognos.features import FeaturePipeline

    n = count_assets(readings) if n_assets is None else n_assets
    frame = sample_assets(_inputs(readings), max_assets / max(n, 1))
    valid = valid_group(frame.toPandas(), readings.fleet)
    return FeaturePipeline(readings.fleet, feature_spec).fit(valid)


def build_features(
    spark: SparkSession,
    readings: SparkReadings,
    pipeline: FeaturePipeline,
    *,
    assets_per_group: int,
    n_assets: int,
) -> DataFrame:
    """``asset_id``, ``time``, every feature and, for run-to-failure fleets, the labels of every
    valid row: ``prognos features build``'s matrix, lazily (write or collect it)."""
    from pyspark.sql.types import DoubleType, LongType, StructField

    fleet, labels = readings.fleet, readings.run_to_failure
    get = _shipped(spark, pipeline)
    fields = [StructField(n, DoubleType()) for n in pipeline.feature_names_out_]
    if labels:
        fields += [
            StructField(n, LongType() if t == "bigint" else DoubleType()) for n, t in LABELS.items()
        ]

    def run(group: pd.DataFrame) -> pd.DataFrame:
        return feature_rows(group, get(), fleet, labels=labels)

    return _grouped(readings, assets_per_group, n_assets).applyInPandas(
        run, _schema(readings, fields)
    )


def score_fleet(
    spark: SparkSession,
    readings: SparkReadings,
    bundle: ModelBundle,
    *,
    assets_per_group: int,
    n_assets: int,
) -> DataFrame:
    """``ModelBundle.predict`` per group: one row per asset at its last valid reading, with
    ``prognos predict``'s columns."""
    from pyspark.sql.types import BooleanType, DoubleType, StructField, StructType

    get, fleet = _shipped(spark, bundle), readings.fleet
    keys = _schema(readings, [])
    fields = [
        StructField("asset_id", keys[ASSET].dataType),
        StructField("cycle", keys[TIME].dataType),
        *(StructField(n, DoubleType()) for n in ("rul", "rul_lower", "rul_upper")),
        StructField("rul_open_above", BooleanType()),
        StructField("failure_probability", DoubleType()),
        StructField("alert", BooleanType()),
    ]

    def run(group: pd.DataFrame) -> pd.DataFrame:
        return prediction_rows(group, get(), fleet)

    return _grouped(readings, assets_per_group, n_assets).applyInPandas(run, StructType(fields))


def training_set(
    spark: SparkSession,
    readings: SparkReadings,
    pipeline: FeaturePipeline,
    *,
    cuts: int,
    max_rul: float,
    seed: int,
    assets_per_group: int,
    n_assets: int,
) -> DataFrame:
    """Features and labels at ``cuts`` random cut points per asset (true RUL at most
    ``max_rul``): a training set of ``cuts`` rows per asset, whatever the fleet's history."""
    from pyspark.sql.types import DoubleType, LongType, StructField

    fleet = readings.fleet
    get = _shipped(spark, pipeline)
    fields = [StructField(n, DoubleType()) for n in pipeline.feature_names_out_]
    fields += [
        StructField(n, LongType() if t == "bigint" else DoubleType()) for n, t in LABELS.items()
    ]

    def run(group: pd.DataFrame) -> pd.DataFrame:
        return cut_point_rows(group, get(), fleet, cuts=cuts, max_rul=max_rul, seed=seed)

    return _grouped(readings, assets_per_group, n_assets).applyInPandas(
        run, _schema(readings, fields)
    )


# -- plumbing -----------------------------------------------------------------------------------


def _asset_hash(seed: int) -> Column:
    from pyspark.sql import functions as sf

    return sf.pmod(sf.xxhash64(sf.col(ASSET).cast("string"), sf.lit(seed)), sf.lit(_HASH_SPAN))


def _inputs(readings: SparkReadings) -> DataFrame:
    """Only the columns a group needs: the fleet's, and the order or dedup key."""
    columns = readings.frame.columns
    keep = [c for c in readings.fleet.columns if c in columns]
    keep += [c for c in (SOURCE_FILE, ARRIVAL, READING_ID) if c in columns]
    return readings.frame.select(*keep)


def _grouped(readings: SparkReadings, assets_per_group: int, n_assets: int) -> Any:
    """Groups of about ``assets_per_group`` whole assets (one asset each when it is 1)."""
    from pyspark.sql import functions as sf

    frame = _inputs(readings)
    if assets_per_group <= 1:
        return frame.groupBy(ASSET)
    buckets = max(1, math.ceil(n_assets / assets_per_group))
    return frame.groupBy(sf.pmod(sf.xxhash64(sf.col(ASSET).cast("string")), sf.lit(buckets)))


def _schema(readings: SparkReadings, fields: list[Any]) -> StructType:
    """``asset_id`` and ``time`` as the groups return them, then ``fields``."""
    from pyspark.sql.types import StructField, StructType, TimestampType

    source = readings.frame.schema
    time_type: DataType = source[TIME].dataType
    if readings.fleet.time_kind == "timestamp":
        time_type = TimestampType()  # the lake stores int64 ns; groups return datetimes
    return StructType(
        [StructField(ASSET, source[ASSET].dataType), StructField(TIME, time_type), *fields]
    )


def _shipped(spark: SparkSession, value: T) -> Callable[[], T]:
    """How a task gets ``value``: a broadcast variable (sent once per executor and cached by
    its Python workers) in classic Spark; in the function's closure under Spark Connect."""
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        return lambda: value
    broadcast = spark.sparkContext.broadcast(value)
    return lambda: broadcast.value
