"""Training on a fleet larger than memory: Spark prepares the cut-point training set (features and
labels at a few random cycles per asset, :func:`prognos.spark.jobs.training_set`), and the
learners train in memory on it, or on a sample of its assets.

``cuts`` rows per asset instead of every cycle is what makes the set small (20 rows instead of
~235 per asset here); sampling by asset is the second lever when even that does not fit
(bench/bench_spark_train.py measures what it costs on FD002). Tree members train on the feature
matrix; the sequence member needs each row's window of channels, which this set does not carry.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prognos.errors import ConfigError
from prognos.fleet import ASSET
from prognos.models.base import Member, ModelInput, Targets
from prognos.training.config import TrainConfig
from prognos.training.cv import make_member

TABULAR = ("xgboost", "forest")


def cut_point_input(rows: pd.DataFrame, feature_names: list[str]) -> tuple[ModelInput, Targets]:
    """A collected training set as members' input: the feature matrix, the asset of each row
    (early stopping splits by asset) and the targets; no sequences (one empty step per row)."""
    n = len(rows)
    X = ModelInput(
        features=rows[feature_names].to_numpy(dtype=np.float64),
        feature_names=list(feature_names),
        sequences=np.zeros((n, 1, 0), dtype=np.float32),
        lengths=np.ones(n, dtype=np.int64),
        groups=rows[ASSET].to_numpy(),
    )
    y = Targets(
        rul=rows["rul_capped"].to_numpy(dtype=np.float64),
        failed=rows["failure_within_h"].to_numpy(dtype=np.int64),
    )
    return X, y


def fit_member(
    rows: pd.DataFrame, feature_names: list[str], config: TrainConfig, name: str = "xgboost"
) -> Member:
    """A tabular member (``config``'s parameters and seed) fitted on a cut-point training set."""
    if name not in TABULAR:
        raise ConfigError(f"only tabular members train on a cut-point set: {TABULAR}, not {name!r}")
    X, y = cut_point_input(rows, feature_names)
    member = make_member(name, config.members[name].params, config.seed)  # type: ignore[index]
    return member.fit(X, y)
