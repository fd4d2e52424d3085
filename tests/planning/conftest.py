"""Random fleets of predictions for the planning tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def random_predictions(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """``n`` assets' predictions shaped like a model's: near-failure ones narrow, far ones open."""
    rul = rng.uniform(0.0, 60.0, n)
    width = rng.uniform(2.0, 20.0, n)
    upper = rul + width
    upper[rul > 45.0] = np.nan  # open above
    proba = 1.0 / (1.0 + np.exp((rul - 15.0) / 5.0 + rng.normal(0.0, 0.5, n)))
    return pd.DataFrame(
        {
            "asset_id": [f"a{i}" for i in range(n)],
            "rul": rul,
            "rul_lower": np.maximum(rul - width, 0.0),
            "rul_upper": upper,
            "failure_probability": proba,
            "alert": proba >= 0.038,
        }
    )
