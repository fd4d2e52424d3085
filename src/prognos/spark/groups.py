"""What one Spark task does to one group of whole assets: plain pandas, no pyspark.

Every function here takes the readings of one or more *whole* assets (any row order) and calls
the same code the pandas engine calls on the whole fleet: validation, the fitted pipeline's
``transform``, the bundle's ``predict``, the training cut points. Features are causal and per
asset, so a group's rows equal the whole fleet's rows for those assets; the parity tests hold
them to that.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from prognos.data.labels import run_to_failure_labels
from prognos.data.lake_source import canonical_readings
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
LABELS = {"rul": "double", "rul_capped": "double", "failure_within_h": "bigint"}


def valid_group(group: pd.DataFrame, fleet: FleetSpec) -> pd.DataFrame:
    """The group's readings that pass validation (the quarantined rest dropped), canonical
    columns only, in the order the pandas engine validates them: lake rows deduplicated and
    sorted as the ``lake:`` reader does, other rows in the order they were read."""
    if READING_ID in group.columns:
        readings = canonical_readings(dedupe(group), fleet, "lake")
    else:
        order = [c for c in (SOURCE_FILE, ARRIVAL) if c in group.columns]
        if order:
            group = group.sort_values(order, kind="mergesort")
        readings = group[fleet.columns].reset_index(drop=True)
    return validate_readings(readings, fleet).valid


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
) -> pd.DataFrame:
    """Features and labels at ``cuts`` random rows per asset whose true RUL is at most
    ``max_rul`` (training's :func:`~prognos.training.cv.cut_rows`), drawn per asset from a seed
    of its own: the same rows whichever assets share the group."""
    from prognos.training.cv import cut_rows

    valid = valid_group(group, fleet).sort_values([ASSET, TIME], kind="mergesort")
    valid = valid.reset_index(drop=True)
    labels = run_to_failure_labels(valid, **_label_args(fleet))
    chosen = [
        cut_rows(
            valid.iloc[rows],
            labels["rul"].iloc[rows],
            cuts,
            max_rul,
            asset_seed(asset, seed),
        )
        + rows[0]
        for asset, rows in _asset_positions(valid).items()
    ]
    at = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.intp)
    features = pipeline.transform(valid, at)
    return pd.concat(
        [
            valid[[ASSET, TIME]].iloc[at].reset_index(drop=True),
            features.reset_index(drop=True),
            labels.iloc[at].reset_index(drop=True),
        ],
        axis=1,
    )


def asset_seed(asset: Hashable, seed: int) -> int:
    """A stable per-asset seed (CRC32 of the id's text: Python's ``hash`` of a str is salted)."""
    return (zlib.crc32(str(asset).encode()) + seed) % 2**32


def _asset_positions(valid: pd.DataFrame) -> dict[Hashable, np.ndarray]:
    """Positions of each asset's rows in ``valid`` (sorted by asset then time: contiguous)."""
    return {a: np.asarray(rows) for a, rows in valid.groupby(ASSET, sort=False).indices.items()}


def _label_args(fleet: FleetSpec) -> dict[str, int]:
    return {"rul_cap": int(fleet.labels.rul_cap), "horizon": int(fleet.labels.horizon)}
