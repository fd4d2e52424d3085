"""Training on a fleet larger than memory: Spark prepares the cut-point training set (features,
labels and, for the network, its input windows at a few random cycles per asset,
:func:`prognos.spark.jobs.training_set`), and the members train in memory on it, or on a sample
of its assets.

``cuts`` rows per asset instead of every cycle is what makes the set small (50 rows instead of
~235 per asset on FD002); sampling by asset is the second lever when even that does not fit
(bench/bench_spark_train.py measures what it costs on FD002). Tree members train on the feature
matrix; the sequence member on the windows (a set built with ``window=``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prognos.errors import ConfigError
from prognos.fleet import ASSET
from prognos.models.base import Member, ModelInput, Targets
from prognos.spark.groups import LENGTH, LIFE_GROUP, SEQUENCE
from prognos.training.config import MemberName, TrainConfig
from prognos.training.members import make_member

TABULAR = ("xgboost", "forest")


def cut_point_input(
    rows: pd.DataFrame, feature_names: list[str], window: int | None = None
) -> tuple[ModelInput, Targets]:
    """A collected training set as members' input: the feature matrix, the windows when the set
    has them (``window``: the length it was built with), the physical asset of each row (early
    stopping splits by asset) and the targets. Without windows each row has one empty step."""
    n = len(rows)
    sequences = np.zeros((n, 1, 0), dtype=np.float32)
    lengths = np.ones(n, dtype=np.int64)
    if window is not None:
        if SEQUENCE not in rows.columns:
            raise ConfigError(
                "this training set has no windows: build it with training_set(window=...)"
            )
        flat = np.stack(list(rows[SEQUENCE])) if n else np.zeros((0, window), np.float32)
        if flat.shape[1] % window:
            raise ConfigError(
                f"windows of {flat.shape[1]} values are not {window} steps of whole channels: "
                "train with the window the set was built with"
            )
        sequences = flat.astype(np.float32, copy=False).reshape(n, window, -1)
        lengths = np.array(rows[LENGTH], dtype=np.int64)  # writable: torch wraps it
    groups = rows[LIFE_GROUP] if LIFE_GROUP in rows.columns else rows[ASSET]
    X = ModelInput(
        features=rows[feature_names].to_numpy(dtype=np.float64),
        feature_names=list(feature_names),
        sequences=sequences,
        lengths=lengths,
        groups=groups.to_numpy(),
    )
    y = Targets.of(rows)
    return X, y


def fit_member(
    rows: pd.DataFrame, feature_names: list[str], config: TrainConfig, name: MemberName = "xgboost"
) -> Member:
    """A member (``config``'s parameters and seed) fitted on a cut-point training set: a tabular
    one on its features, the sequence network on its windows (``config.window`` long)."""
    if name not in TABULAR and SEQUENCE not in rows.columns:
        raise ConfigError(
            f"the {name!r} member trains on windows: build the set with training_set(window=...); "
            f"tabular members ({', '.join(TABULAR)}) train on its features alone"
        )
    window = config.window if SEQUENCE in rows.columns else None
    X, y = cut_point_input(rows, feature_names, window)
    member = make_member(name, config.members[name].params, config.seed)
    return member.fit(X, y)
