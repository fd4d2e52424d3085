"""The deployable unit as one MLflow pyfunc: readings in, one prediction per asset out."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext

from prognos.errors import ConfigError
from prognos.fleet import ASSET
from prognos.models.bundle import ModelBundle

BUNDLE_ARTIFACT = "bundle"


class PrognosModel(PythonModel):
    """Loads the pickled :class:`ModelBundle`; ``predict`` takes whole histories of readings.

    Input: a readings frame (``asset_id``, ``time``, the fleet's settings and sensors), every
    reading of each asset (features need history). Output: ``PREDICTION_COLUMNS``, one row per
    asset at its last reading.
    """

    def __init__(self) -> None:
        self.bundle: ModelBundle | None = None

    def load_context(self, context: PythonModelContext) -> None:
        self.bundle = load_bundle(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: Any = None
    ) -> pd.DataFrame:
        if self.bundle is None:
            self.load_context(context)
        assert self.bundle is not None
        return self.bundle.predict(model_input)


def save_bundle(bundle: ModelBundle, path: Path) -> Path:
    with path.open("wb") as handle:
        pickle.dump(bundle, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def load_bundle(path: Path) -> ModelBundle:
    with path.open("rb") as handle:
        bundle = pickle.load(handle)
    if not isinstance(bundle, ModelBundle):
        raise TypeError(f"{path} does not hold a prognos ModelBundle")
    if not hasattr(bundle.post, "stack"):
        # Pickles keep attributes, not code: a bundle from before the log-odds stack would
        # otherwise load and fail at its first prediction.
        raise ConfigError(
            f"{path} holds a model trained by an earlier prognos (probability blend and separate "
            "calibrator, closed intervals on the capped RUL): retrain it with `prognos train`"
        )
    return bundle


def signature_and_example(
    bundle: ModelBundle, readings: pd.DataFrame, assets: int = 2
) -> tuple[ModelSignature, pd.DataFrame]:
    """Signature inferred from a real example (a few assets' full histories) and its output."""
    keep = readings[ASSET].drop_duplicates().iloc[:assets]
    example = readings[readings[ASSET].isin(keep)].reset_index(drop=True)
    example = example[bundle.fleet.columns]
    return infer_signature(example, bundle.predict(example)), example
