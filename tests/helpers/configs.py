"""Small training configurations, for tests that need *a* model trained (through the CLI, the DVC
pipeline, an MLflow server), not the default configuration's accuracy.

The default reads 150 readings, in the network's window and the longest feature window alike;
these read 30 (the network still in the default's groups of 3): the same code paths, and a
training on 24 assets about a third quicker than the tiny model's (``trained.FAST``).
"""

from __future__ import annotations

from typing import Any

QUICK: dict[str, Any] = {
    "window": 30,
    "features": {"windows": [5, 10, 30]},
    "folds": 3,
    "cuts_per_asset": 4,
    "members": {
        "xgboost": {"params": {"n_estimators": 80}},
        "sequence": {"params": {"max_epochs": 4, "hidden": 16}},
    },
}
