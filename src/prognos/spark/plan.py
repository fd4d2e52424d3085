"""How a job reaches its groups: the columns a group needs, the buckets of whole assets, the
output's key columns, and how the fitted pipeline or bundle gets to the tasks.

Groups are buckets of whole assets (a hash of the asset id), not single assets: a group is
built in one vectorised pandas call (1,000 assets as 1,000 calls took 150 s, as 4 groups 76 s:
``bench/bench_spark.py --grouping``). The fitted pipeline or bundle goes to the workers as a
broadcast variable (classic Spark) or inside the function (Spark Connect, which has none).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from prognos.fleet import ASSET, TIME
from prognos.spark.groups import ARRIVAL, ROW, ROW_BASE, SOURCE_FILE
from prognos.spark.sources import SparkReadings
from prognos.storage.lake import READING_ID

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

T = TypeVar("T")
HASH_SPAN = 1_000_000


def asset_hash(seed: int, column: str = ASSET) -> Column:
    """A stable hash of the asset id in ``[0, HASH_SPAN)``: samples of whole assets."""
    from pyspark.sql import functions as sf

    return sf.pmod(sf.xxhash64(sf.col(column).cast("string"), sf.lit(seed)), sf.lit(HASH_SPAN))


def inputs(readings: SparkReadings) -> DataFrame:
    """Only the columns a group needs: the fleet's, and the order, dedup and numbering keys."""
    columns = readings.frame.columns
    keep = [c for c in readings.fleet.columns if c in columns]
    keep += [c for c in (SOURCE_FILE, ARRIVAL, READING_ID, ROW, ROW_BASE) if c in columns]
    return readings.frame.select(*keep)


def grouped(readings: SparkReadings, assets_per_group: int, n_assets: int) -> Any:
    """Groups of about ``assets_per_group`` whole assets (one asset each when it is 1)."""
    from pyspark.sql import functions as sf

    frame = inputs(readings)
    if assets_per_group <= 1:
        return frame.groupBy(ASSET)
    buckets = max(1, math.ceil(n_assets / assets_per_group))
    return frame.groupBy(sf.pmod(sf.xxhash64(sf.col(ASSET).cast("string")), sf.lit(buckets)))


def key_types(readings: SparkReadings) -> tuple[DataType, DataType]:
    """``asset_id``'s and ``time``'s types as the groups return them."""
    from pyspark.sql.types import TimestampType

    source = readings.frame.schema
    time_type: DataType = source[TIME].dataType
    if readings.fleet.time_kind == "timestamp":
        time_type = TimestampType()  # the lake stores int64 ns; groups return datetimes
    return source[ASSET].dataType, time_type


def schema(readings: SparkReadings, fields: list[Any]) -> StructType:
    """``asset_id`` and ``time`` as the groups return them, then ``fields``."""
    from pyspark.sql.types import StructField, StructType

    asset, time = key_types(readings)
    return StructType([StructField(ASSET, asset), StructField(TIME, time), *fields])


def shipped(spark: SparkSession, value: T) -> Callable[[], T]:
    """How a task gets ``value``: a broadcast variable (sent once per executor and cached by
    its Python workers) in classic Spark; in the function's closure under Spark Connect."""
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        return lambda: value
    broadcast = spark.sparkContext.broadcast(value)
    return lambda: broadcast.value
