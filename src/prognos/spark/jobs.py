"""The batch jobs on Spark: fit the pipeline on the driver, then features, fleet scoring and the
cut-point training set per group of whole assets (``groupBy(...).applyInPandas``, grouped as
:mod:`prognos.spark.plan` says). The quarantine of a features job is
:mod:`prognos.spark.quarantine`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from prognos.errors import LabelError
from prognos.fleet import ASSET, TIME
from prognos.spark.groups import (
    LABELS,
    LENGTH,
    LIFE_GROUP,
    SEQUENCE,
    cut_point_rows,
    feature_rows,
    prediction_rows,
    valid_group,
)
from prognos.spark.plan import HASH_SPAN, asset_hash, grouped, inputs, key_types, schema, shipped
from prognos.spark.sources import SparkReadings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from prognos.features import FeaturePipeline, FeatureSpec
    from prognos.models.bundle import ModelBundle


def count_assets(readings: SparkReadings) -> int:
    """Distinct assets (one pass over the asset column)."""
    return int(readings.frame.select(ASSET).distinct().count())


def sample_assets(frame: DataFrame, fraction: float, seed: int = 0) -> DataFrame:
    """Rows of about ``fraction`` of the assets, chosen by a hash of the asset id: whole assets,
    the same ones on every run (a training set of lives: whole physical assets, all their
    lives together)."""
    if fraction >= 1.0:
        return frame
    column = LIFE_GROUP if LIFE_GROUP in frame.columns else ASSET
    return frame.where(asset_hash(seed, column) < int(fraction * HASH_SPAN))


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
    frame = sample_assets(inputs(readings), max_assets / max(n, 1))
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
    get = shipped(spark, pipeline)
    fields = [StructField(n, DoubleType()) for n in pipeline.feature_names_out_]
    if labels:
        fields += [
            StructField(n, LongType() if t == "bigint" else DoubleType()) for n, t in LABELS.items()
        ]

    def run(group: pd.DataFrame) -> pd.DataFrame:
        return feature_rows(group, get(), fleet, labels=labels)

    return grouped(readings, assets_per_group, n_assets).applyInPandas(
        run, schema(readings, fields)
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

    get, fleet = shipped(spark, bundle), readings.fleet
    asset, time = key_types(readings)
    fields = [
        StructField("asset_id", asset),
        StructField("cycle", time),
        *(StructField(n, DoubleType()) for n in ("rul", "rul_lower", "rul_upper")),
        StructField("rul_open_above", BooleanType()),
        StructField("failure_probability", DoubleType()),
        StructField("alert", BooleanType()),
    ]

    def run(group: pd.DataFrame) -> pd.DataFrame:
        return prediction_rows(group, get(), fleet)

    return grouped(readings, assets_per_group, n_assets).applyInPandas(run, StructType(fields))


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
    window: int | None = None,
    events: pd.DataFrame | None = None,
) -> DataFrame:
    """Features and labels at ``cuts`` random cut points per training asset (true RUL at most
    ``max_rul``): a training set of ``cuts`` rows per asset, whatever the fleet's history.

    Labels as the pandas engine trains on them: run to failure, or from an event log (``events``:
    canonical columns, as ``read_events`` gives them; else the readings' own,
    :attr:`SparkReadings.events`) the lives of retraining (``asset_id`` is
    ``"<asset>:<life>"``, :data:`~prognos.spark.groups.LIFE_GROUP` its asset). ``window`` adds
    the network's input at each cut: ``sequence`` (window x channels float32, flattened row by
    row) and ``length``.
    """
    from pyspark.sql.types import (
        ArrayType,
        DoubleType,
        FloatType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    fleet = readings.fleet
    events = _life_events(readings, events)
    get = shipped(spark, pipeline)
    get_events = shipped(spark, events)
    asset, time = key_types(readings)
    fields = [
        StructField(ASSET, asset if events is None else StringType()),
        StructField(TIME, time),
        *(StructField(n, DoubleType()) for n in pipeline.feature_names_out_),
        *(StructField(n, LongType() if t == "bigint" else DoubleType()) for n, t in LABELS.items()),
    ]
    if events is not None:
        fields.append(StructField(LIFE_GROUP, StringType()))
    if window is not None:
        fields.append(StructField(SEQUENCE, ArrayType(FloatType(), containsNull=False)))
        fields.append(StructField(LENGTH, LongType()))

    def run(group: pd.DataFrame) -> pd.DataFrame:
        return cut_point_rows(
            group,
            get(),
            fleet,
            cuts=cuts,
            max_rul=max_rul,
            seed=seed,
            events=get_events(),
            window=window,
        )

    return grouped(readings, assets_per_group, n_assets).applyInPandas(run, StructType(fields))


def _life_events(readings: SparkReadings, given: pd.DataFrame | None) -> pd.DataFrame | None:
    """The event log in lives' terms: the one given, else none for a run-to-failure fleet (as
    retraining prefers it), else the readings' own; a fleet with neither cannot be labelled.
    Checked here, on the driver: a bad log fails before the job, not inside a task."""
    from prognos.data.outcomes import EVENT_COLUMNS, check_events, spec_events

    if given is None and readings.run_to_failure:
        return None
    events = given if given is not None else readings.events
    if events is None:
        raise LabelError(
            f"{readings.source} neither runs to failure nor has an event log: it cannot be labelled"
        )
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise LabelError(f"the event log lacks column(s) {missing} (read_events gives them)")
    rule = readings.fleet.labels
    lives = spec_events(events, failure_events=rule.failure_events, reset_events=rule.reset_events)
    check_events(lives)
    return lives
