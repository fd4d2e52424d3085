"""Validation's record on Spark: the quarantined rows with their reasons, and the counts, as the
pandas engine keeps them (``prognos features build`` writes its quarantine and prints its counts).

The quarantine is its own job over the same groups (validation only, no features: a fraction
of the features job's time), cached while its counts are taken and it is written; the feature
matrix is then written as before. Each quarantined row keeps the number the pandas engine gives
it (``row``: its position in the readings that engine reads), so the two engines' quarantines
are the same rows: the job numbers the rows first (:func:`numbered`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pandas as pd

from prognos.data.validation import RULES
from prognos.errors import SchemaError
from prognos.fleet import ASSET, TIME
from prognos.spark.groups import ARRIVAL, ROW, ROW_BASE, SOURCE_FILE, quarantine_rows
from prognos.spark.jobs import build_features
from prognos.spark.plan import grouped, key_types
from prognos.spark.sources import SparkReadings
from prognos.storage.lake import READING_ID

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from prognos.features import FeaturePipeline

# Monotonically increasing ids carry the partition in their upper 31 bits.
_PARTITION_SHIFT = 33


@dataclass(frozen=True)
class FeatureWrite:
    """What a features job wrote: rows kept and quarantined (rows per rule, a row counted once
    per rule it broke, as the pandas report counts them) and where the quarantine went."""

    valid_rows: int
    quarantined_rows: int
    by_rule: dict[str, int]
    quarantine_path: str | None

    @property
    def total_rows(self) -> int:
        return self.valid_rows + self.quarantined_rows


def numbered(spark: SparkSession, readings: SparkReadings) -> SparkReadings:
    """The readings with each row's number in the pandas engine's readings: :data:`ROW`, or for
    a lake :data:`ROW_BASE` (the asset's first position in the deduplicated fleet sorted by
    asset then time). One small aggregation, collected to the driver."""
    from pyspark.sql import functions as sf

    frame = readings.frame
    if readings.positioned:  # loaded on the driver: arrival is already the position
        return replace(readings, frame=frame.withColumn(ROW, sf.col(ARRIVAL)))
    if READING_ID in frame.columns:
        counts = frame.select(ASSET, TIME).distinct().groupBy(ASSET).count().toPandas()
        counts = counts.sort_values(ASSET, kind="mergesort")
        counts[ROW_BASE] = counts["count"].cumsum() - counts["count"]
        bases = spark.createDataFrame(counts[[ASSET, ROW_BASE]], schema=_base_schema(readings))
        return replace(readings, frame=frame.join(sf.broadcast(bases), ASSET))
    # Files in name order, each file's rows in their order: a file's blocks are partitions in
    # offset order, and within one the ids count the rows.
    keys = [SOURCE_FILE] if SOURCE_FILE in frame.columns else []
    part = sf.shiftright(sf.col(ARRIVAL), _PARTITION_SHIFT).alias("_part")
    blocks = (
        frame.groupBy(*keys, part)
        .agg(sf.count(sf.lit(1)).alias("_n"), sf.min(ARRIVAL).alias("_first"))
        .toPandas()
        .sort_values([*keys, "_part"], kind="mergesort")
    )
    blocks["_offset"] = blocks["_n"].cumsum() - blocks["_n"]
    table = spark.createDataFrame(blocks[[*keys, "_part", "_first", "_offset"]])
    with_rows = (
        frame.withColumn("_part", part)
        .join(sf.broadcast(table), [*keys, "_part"])
        .withColumn(ROW, sf.col("_offset") + sf.col(ARRIVAL) - sf.col("_first"))
        .drop("_part", "_first", "_offset")
    )
    return replace(readings, frame=with_rows)


def quarantine(
    spark: SparkSession, readings: SparkReadings, *, assets_per_group: int, n_assets: int
) -> DataFrame:
    """Validation's quarantine, lazily: ``row``, the fleet's columns as read, ``reason``
    (``rule:column;...``), one row per quarantined reading."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    fleet = readings.fleet
    source = readings.frame.schema
    missing = [c for c in fleet.columns if c not in source.names]
    if missing:
        raise SchemaError(f"{readings.source}: no column(s) {missing} of fleet spec {fleet.name!r}")
    asset, time = key_types(readings)
    kinds = {ASSET: asset, TIME: time}
    fields = [
        StructField("row", LongType()),
        *(StructField(c, kinds.get(c) or source[c].dataType) for c in fleet.columns),
        StructField("reason", StringType()),
    ]

    def run(group: pd.DataFrame) -> pd.DataFrame:
        return quarantine_rows(group, fleet)

    rows = numbered(spark, readings)
    return grouped(rows, assets_per_group, n_assets).applyInPandas(run, StructType(fields))


def quarantine_counts(quarantined: DataFrame) -> tuple[int, dict[str, int]]:
    """Quarantined rows, and rows per rule (a row once per rule, in validation's rule order),
    in one pass: a rollup whose grand total counts each row once."""
    from pyspark.sql import functions as sf

    tags = quarantined.select("row", sf.explode(sf.split("reason", ";")).alias("tag"))
    rules = tags.select("row", sf.substring_index("tag", ":", 1).alias("rule"))
    counted = rules.rollup("rule").agg(sf.count_distinct("row").alias("rows")).collect()
    found = {r["rule"]: int(r["rows"]) for r in counted}
    total = found.pop(None, 0)
    order = {rule: i for i, rule in enumerate(RULES)}
    ranked = sorted(found, key=lambda r: order.get(r, len(order)))
    return total, {rule: found[rule] for rule in ranked}


def write_features(
    spark: SparkSession,
    readings: SparkReadings,
    pipeline: FeaturePipeline,
    path: str,
    quarantine_path: str,
    *,
    assets_per_group: int,
    n_assets: int,
) -> FeatureWrite:
    """Write the quarantine (a Parquet directory, only when a row was quarantined, as the pandas
    engine writes its file) and the feature matrix (a Parquet directory); return the counts."""
    held = quarantine(spark, readings, assets_per_group=assets_per_group, n_assets=n_assets)
    held = held.cache()
    try:
        quarantined, by_rule = quarantine_counts(held)
        if quarantined:
            held.write.mode("overwrite").parquet(quarantine_path)
    finally:
        held.unpersist()
    matrix = build_features(
        spark, readings, pipeline, assets_per_group=assets_per_group, n_assets=n_assets
    )
    matrix.write.mode("overwrite").parquet(path)
    valid = spark.read.parquet(path).count()  # from the files' footers
    return FeatureWrite(
        valid_rows=valid,
        quarantined_rows=quarantined,
        by_rule=by_rule,
        quarantine_path=quarantine_path if quarantined else None,
    )


def _base_schema(readings: SparkReadings) -> str:
    """``asset_id`` as the frame has it, and the base."""
    asset = readings.frame.schema[ASSET].dataType.simpleString()
    return f"{ASSET} {asset}, {ROW_BASE} bigint"
