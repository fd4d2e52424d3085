"""What one Spark task does to one group of whole assets: plain pandas, no pyspark.

Every function here takes the readings of one or more *whole* assets (any row order) and calls
the same code the pandas engine calls on the whole fleet: validation (and its quarantine), the
fitted pipeline's ``transform`` and windows, the bundle's ``predict``, the labels (run to failure,
or lives from an event log) and the training cut points. Features are causal and per asset, so
a group's rows equal the whole fleet's rows for those assets; the parity tests hold them to that.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from prognos.data.labels import run_to_failure_labels
from prognos.data.lake_source import canonical_readings
from prognos.data.outcomes import life_labels
from prognos.data.validation import validate_readings
from prognos.fleet import ASSET, TIME, FleetSpec
from prognos.storage.lake import READING_ID, dedupe

if TYPE_CHECKING:
    from prognos.features import FeaturePipeline
    from prognos.models.bundle import ModelBundle

# Arrival order of each row, added when Spark reads the data (a shuffle loses row order, and
# validation's duplicate and out-of-order verdicts depend on it): the file's rank in name order
# (when there are several) and the row's order within it. Dropped before any output.
SOURCE_FILE, ARRIVAL = "_file", "_arrival"
# Where a quarantine job numbered the rows: each row's position in the readings the pandas engine
# reads (its quarantine's ``row``); for a lake, the asset's first position in the deduplicated,
# sorted fleet (its rows follow in time order).
ROW, ROW_BASE = "_row", "_row_base"
LABELS = {"rul": "double", "rul_capped": "double", "failure_within_h": "bigint"}
# Training-set columns beyond the features and labels: the physical asset of a life (event-log
# fleets, whose training assets are lives) and the network's flattened window and its length.
LIFE_GROUP, SEQUENCE, LENGTH = "group", "sequence", "length"


def source_readings(group: pd.DataFrame, fleet: FleetSpec) -> pd.DataFrame:
    """The group's readings as the pandas engine validates them: canonical columns, lake rows
    deduplicated and sorted as the ``lake:`` reader does, other rows in the order they were
    read; indexed by their row numbers when the job numbered them (:data:`ROW`)."""
    if READING_ID in group.columns:
        deduped = dedupe(group)
        readings = canonical_readings(deduped, fleet, "lake")
        if ROW_BASE in deduped.columns:
            within = deduped.groupby(ASSET, sort=False).cumcount().to_numpy()
            readings.index = pd.Index(deduped[ROW_BASE].to_numpy() + within)
        return readings
    order = [c for c in (ROW, SOURCE_FILE, ARRIVAL) if c in group.columns]
    if order:
        group = group.sort_values(order, kind="mergesort")
    readings = group[fleet.columns]
    if ROW in group.columns:
        return readings.set_axis(pd.Index(group[ROW].to_numpy()))
    return readings.reset_index(drop=True)


def valid_group(group: pd.DataFrame, fleet: FleetSpec) -> pd.DataFrame:
    """The group's readings that pass validation (the quarantined rest is the quarantine job's:
    :func:`quarantine_rows`)."""
    return validate_readings(source_readings(group, fleet), fleet).valid


def quarantine_rows(group: pd.DataFrame, fleet: FleetSpec) -> pd.DataFrame:
    """Validation's quarantine of the group: ``row`` (the row's number in the source, as the
    pandas engine reports it), the fleet's columns as read, and the ``reason``."""
    return validate_readings(source_readings(group, fleet), fleet).quarantine.infer_objects()


def feature_rows(
    group: pd.DataFrame, pipeline: FeaturePipeline, fleet: FleetSpec, *, labels: bool
) -> pd.DataFrame:
    """``asset_id``, ``time``, the pipeline's features and (``labels``: run-to-failure) labels
    of every valid row: ``prognos features build``'s matrix for these assets."""
    valid = valid_group(group, fleet)
    parts = [valid[[ASSET, TIME]], pipeline.transform(valid)]
    if labels:
        parts.append(run_to_failure_labels(valid, **_label_args(fleet)))
    return pd.concat(parts, axis=1).reset_index(drop=True)


def prediction_rows(group: pd.DataFrame, bundle: ModelBundle, fleet: FleetSpec) -> pd.DataFrame:
    """``ModelBundle.predict`` of the group's valid readings (validated against the source's
    spec, as ``prognos predict`` does): one row per asset at its last reading."""
    return bundle.predict(valid_group(group, fleet))


def cut_point_rows(
    group: pd.DataFrame,
    pipeline: FeaturePipeline,
    fleet: FleetSpec,
    *,
    cuts: int,
    max_rul: float,
    seed: int,
    events: pd.DataFrame | None = None,
    window: int | None = None,
) -> pd.DataFrame:
    """Features and labels at ``cuts`` random rows per training asset whose true RUL is at most
    ``max_rul`` (training's :func:`~prognos.training.cv.cut_rows`), drawn per asset from a seed
    of its own: the same rows whichever assets share the group.

    ``events`` (the fleet's log in lives' terms, :func:`~prognos.data.outcomes.spec_events`)
    labels the rows as retraining does (:func:`~prognos.data.outcomes.life_labels`): each life
    is a training asset ``"<asset>:<life>"``, its asset in :data:`LIFE_GROUP`. ``window`` adds
    each row's network input (:func:`~prognos.models.bundle.model_input`, flattened
    window x channels, and its real length)."""
    from prognos.models.bundle import model_input
    from prognos.training.cv import cut_rows

    readings, labels, physical = training_rows(valid_group(group, fleet), fleet, events)
    chosen = [
        cut_rows(
            readings.iloc[rows],
            labels["rul"].iloc[rows],
            cuts,
            max_rul,
            asset_seed(asset, seed),
        )
        + rows[0]
        for asset, rows in _asset_positions(readings).items()
    ]
    at = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.intp)
    names = list(pipeline.feature_names_out_)
    features = pd.DataFrame(np.zeros((0, len(names))), columns=names)
    windows: list[np.ndarray] = []
    lengths = np.zeros(0, dtype=np.int64)
    if len(at) and window is None:
        features = pipeline.transform(readings, at).reset_index(drop=True)
    elif len(at) and window is not None:
        X = model_input(pipeline, readings, window, at)
        features = pd.DataFrame(X.features, columns=X.feature_names)
        windows, lengths = list(X.sequences.reshape(len(at), -1)), X.lengths
    key = readings[[ASSET, TIME]].iloc[at].reset_index(drop=True)
    out = pd.concat([key, features, labels.iloc[at].reset_index(drop=True)], axis=1)
    if physical is not None:
        out[LIFE_GROUP] = physical.iloc[at].to_numpy()
    if window is not None:
        out[SEQUENCE] = pd.Series(windows, dtype=object)
        out[LENGTH] = lengths
    return out


def training_rows(
    valid: pd.DataFrame, fleet: FleetSpec, events: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series | None]:
    """Training assets' rows sorted by asset then time, their labels (aligned, positional), and
    with ``events`` each row's physical asset: run-to-failure labels without an event log, the
    lives of :func:`~prognos.data.outcomes.life_labels` (this group's assets' events) with one."""
    valid = valid.reset_index(drop=True)
    if events is None:
        readings = valid.sort_values([ASSET, TIME], kind="mergesort").reset_index(drop=True)
        return readings, run_to_failure_labels(readings, **_label_args(fleet)), None
    mine = events[events[ASSET].astype(str).isin(set(valid[ASSET].astype(str)))]
    lives = life_labels(valid, mine, **_label_args(fleet))
    order = lives.readings.reset_index(drop=True).sort_values([ASSET, TIME], kind="mergesort")
    at = order.index.to_numpy()
    return (
        order.reset_index(drop=True),
        lives.labels.iloc[at].reset_index(drop=True),
        lives.groups.iloc[at].astype(str).reset_index(drop=True),
    )


def asset_seed(asset: Hashable, seed: int) -> int:
    """A stable per-asset seed (CRC32 of the id's text: Python's ``hash`` of a str is salted)."""
    return (zlib.crc32(str(asset).encode()) + seed) % 2**32


def _asset_positions(valid: pd.DataFrame) -> dict[Hashable, np.ndarray]:
    """Positions of each asset's rows in ``valid`` (sorted by asset then time: contiguous)."""
    return {a: np.asarray(rows) for a, rows in valid.groupby(ASSET, sort=False).indices.items()}


def _label_args(fleet: FleetSpec) -> dict[str, int]:
    return {"rul_cap": int(fleet.labels.rul_cap), "horizon": int(fleet.labels.horizon)}
