"""Readings as a Spark DataFrame: the lake and Parquet read by Spark itself (never through the
driver), anything else loaded by prognos on the driver and handed over.

The rows keep the source's columns; :func:`prognos.spark.groups.valid_group` turns each group
into canonical, deduplicated, validated readings with the pandas engine's own code, so both
engines see the same rows. An event log (``events=``, or a ``parquet:`` source's sidecar) is
small and read on the driver, as the pandas engine reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prognos.data.sources import describe_table, infer_spec, parse_source, read_events
from prognos.errors import DataSourceError, LakeError
from prognos.fleet import FleetSpec
from prognos.spark.groups import ARRIVAL, SOURCE_FILE

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class SparkReadings:
    """A fleet's readings in Spark: the frame (source columns plus :data:`ARRIVAL`), the spec
    that makes them canonical, whether trajectories run to failure, and the event log (pandas,
    canonical columns) when labels come from one. ``positioned``: :data:`ARRIVAL` is already
    each row's position in the pandas engine's readings (a source loaded on the driver)."""

    frame: DataFrame
    fleet: FleetSpec
    run_to_failure: bool
    source: str
    events: pd.DataFrame | None = None
    positioned: bool = False


def read_readings(
    spark: SparkSession,
    source: str,
    spec: FleetSpec | None = None,
    events: str | Path | None = None,
) -> SparkReadings:
    """``lake:`` and ``parquet:`` read by Spark; ``cmapss:``, ``csv:`` and ``sim:`` loaded on the
    driver (they are single files or generated) and distributed. ``events``: an event-log CSV,
    as ``load_source`` takes it (labels then come from it)."""
    kind, path = parse_source(source)
    if kind == "lake":
        return _read_lake(spark, source, path, spec, events)
    if kind == "parquet":
        return _read_parquet(spark, source, Path(path), spec, events)
    from prognos.data.sources import load_source

    data = load_source(source, spec=spec, events=events)
    # Row order is the loaded frame's: its positions are the rows' numbers (quarantine's `row`).
    rows = data.readings.reset_index(drop=True).assign(**{ARRIVAL: np.arange(len(data.readings))})
    frame = spark.createDataFrame(rows)
    return SparkReadings(
        frame, data.spec, data.run_to_failure, source, events=data.events, positioned=True
    )


def _read_parquet(
    spark: SparkSession, source: str, path: Path, spec: FleetSpec | None, events: str | Path | None
) -> SparkReadings:
    import pandas as pd
    from pyspark.sql import functions as sf

    if not path.exists():
        raise DataSourceError(f"parquet: no such file or directory: {path}")
    # The data files only (a directory holds its sidecars too), as the pandas engine reads them.
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DataSourceError(f"parquet: directory {path} holds no *.parquet files")
    # A spec inferred from the first file alone: Spark reads the rest, never the driver.
    described = describe_table(path, spec, events, lambda: pd.read_parquet(files[0]))
    spec = described.spec
    frame = spark.read.parquet(*(str(f) for f in files))
    mapping = spec.rename_map()
    missing = [c for c in mapping if c not in frame.columns]
    if missing:
        raise DataSourceError(f"{path}: missing column(s) {missing} of fleet spec {spec.name!r}")
    # Row order as pandas reads it (files in name order, rows in file order): Spark splits a file
    # into blocks in offset order and monotonically_increasing_id grows with the block and row.
    frame = frame.select(
        *(sf.col(f"`{src}`").alias(dst) for src, dst in mapping.items()),
        sf.monotonically_increasing_id().alias(ARRIVAL),
        sf.input_file_name().alias("_name"),
    )
    if len(files) > 1:
        names = sorted(r[0] for r in frame.select("_name").distinct().collect())
        ranks = spark.createDataFrame(
            [(n, i) for i, n in enumerate(names)], f"_name string, {SOURCE_FILE} int"
        )
        frame = frame.join(sf.broadcast(ranks), "_name")
    frame = frame.drop("_name")
    return SparkReadings(frame, spec, described.run_to_failure, source, events=described.events)


def _read_lake(
    spark: SparkSession, source: str, path: str, spec: FleetSpec | None, events: str | Path | None
) -> SparkReadings:
    from prognos.data.lake_source import lake_labels, lake_readings, lake_spec, parse_lake
    from prognos.storage.lake import METADATA_COLUMNS, open_lake

    query = parse_lake(path)
    lake = open_lake(query.url)
    fleets = [query.fleet] if query.fleet else lake.fleets()
    if len(fleets) != 1:
        raise LakeError(f"lake {query.url} holds {len(fleets)} fleets: name one with ?fleet=NAME")
    fleet = fleets[0]
    files = lake.files(fleet, query.start, query.end)
    if not files:
        raise LakeError(f"lake {query.url} has no files of fleet {fleet!r}")
    spec = spec or lake_spec(lake, fleet)
    if spec is None:
        sample = lake_readings(lake, files[:1]).drop(columns=list(METADATA_COLUMNS))
        spec = infer_spec(sample, name=fleet)
    spec, event_log, run_to_failure = lake_labels(lake, fleet, spec, events, read_events)
    local = "://" not in query.url
    # Spark reads the files the lake lists (date pruning already done by path); an object
    # store needs its Hadoop connector on the cluster (s3a://, gs://, abfss://).
    paths = [lake.path(f) if local else f"{query.url.rstrip('/')}/{f}" for f in files]
    frame = spark.read.option("mergeSchema", "true").parquet(*paths)
    return SparkReadings(frame, spec, run_to_failure, source, events=event_log)
