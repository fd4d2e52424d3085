"""A drift run with the model at hand: its predictions and key features, then the engine.

:func:`~prognos.monitoring.drift.detect_drift` takes readings and, optionally, predictions; a run
over a data file (``prognos monitor drift``) has neither the predictions nor the key features, so
this computes both with the model on a random subsample of the readings (every row's features
still come from its asset's whole history). 10,000 rows estimate a PSI or a mean to about a
hundredth, and keep a 100,000-reading run within seconds.

Only readings in operating conditions the model knows are predicted, from histories of such
readings: a window mixing unseen conditions would make every feature of the model meaningless
(the engine counts those readings apart anyway).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prognos.fleet import ASSET, TIME
from prognos.models.bundle import ModelBundle, model_input
from prognos.monitoring.drift import DriftResult, detect_drift
from prognos.monitoring.profile import ReferenceProfile

MAX_PREDICTIONS = 10_000


@dataclass
class BatchDrift:
    result: DriftResult
    predictions: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)


def drift_with_model(
    bundle: ModelBundle,
    profile: ReferenceProfile,
    readings: pd.DataFrame,
    *,
    max_predictions: int = MAX_PREDICTIONS,
    seed: int = 0,
) -> BatchDrift:
    """Predict (and build the key features) on at most ``max_predictions`` rows, then compare
    the whole batch with the profile."""
    readings = readings.reset_index(drop=True)
    start = time.perf_counter()
    settings = readings[profile.normaliser.settings].to_numpy(np.float64)
    distance, _ = profile.conditions.measure(settings)
    known = readings[distance <= profile.conditions.cutoff].reset_index(drop=True)
    n = len(known)
    rows = np.arange(n)
    if n > max_predictions > 0:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_predictions, replace=False))
    frame = readings
    predictions = pd.DataFrame(columns=[ASSET, TIME, "failure_probability", "rul"])
    if len(rows) and max_predictions > 0:
        x = model_input(bundle.pipeline, known, bundle.window, rows)
        out = bundle.predict_rows(x)
        predictions = pd.DataFrame(
            {
                ASSET: known[ASSET].to_numpy()[rows],
                TIME: known[TIME].to_numpy()[rows],
                "failure_probability": out["proba"],
                "rul": out["rul"],
            }
        )
        wanted = [f for f in profile.features if f in x.feature_names]
        if wanted:
            values = pd.DataFrame(
                x.features[:, [x.feature_names.index(f) for f in wanted]], columns=wanted
            )
            keys = predictions[[ASSET, TIME]].reset_index(drop=True)
            frame = readings.merge(pd.concat([keys, values], axis=1), on=[ASSET, TIME], how="left")
    predicted = time.perf_counter()
    result = detect_drift(profile, frame, predictions if len(predictions) else None)
    done = time.perf_counter()
    return BatchDrift(
        result=result,
        predictions=predictions,
        seconds={"predict": predicted - start, "drift": done - predicted},
    )
