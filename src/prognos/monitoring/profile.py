"""The reference profile: what drift monitoring compares against, saved with the model at training.

Everything a drift run needs from the training fleet, reduced to statistics (no readings), so a
run never rereads training data (the complaint in Evidently's tracker: reference statistics
recomputed on every run). It is the JSON artifact ``reference_profile.json`` of the training run
that registered the model version, and is loaded by model name and version.

Contents: the model pipeline's normalisation (per-regime scalers, health index), the known
operating conditions, the health-stage cut points, per (regime, stage) cell and monitored column
the reference mean, spread and bin proportions of the level and dynamics tests, their null
calibration, and the reference distribution of the model's predictions on its training rows.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prognos.config import Settings
from prognos.errors import ConfigError, NotFoundError
from prognos.monitoring.stats import Calibration
from prognos.monitoring.strata import Conditions, Layout, Normaliser, Stages

FORMAT = 1
Array = NDArray[np.float64]


@dataclass(frozen=True)
class PredictionReference:
    """The model's predictions on its training rows, per cell: failure probability bins and
    predicted RUL moments."""

    proba_edges: Array  # (bins - 1,)
    proba_props: Array  # (cells, bins)
    rul_mean: Array  # (cells,)
    rul_std: Array  # (cells,)
    rows: int


@dataclass(frozen=True)
class ReferenceProfile:
    """Reference statistics of one model's training fleet (see the module docstring)."""

    fleet: str
    normaliser: Normaliser
    conditions: Conditions
    layout: Layout
    kinds: list[str]  # per column: sensor | health_index | feature
    props: Array  # (tests, cells, bins)
    calibration: Calibration
    stage_mix: Array  # (cells,) share of reference readings per cell
    predictions: PredictionReference | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """The monitored columns: kept sensors, the health index, then the key features."""
        return list(self.layout.columns)

    @property
    def features(self) -> list[str]:
        return [c for c, k in zip(self.layout.columns, self.kinds, strict=True) if k == "feature"]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **_dump(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"reference profile is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise ConfigError(f"reference profile is not format {FORMAT}: retrain the model")
        try:
            profile = _load(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"reference profile is malformed: {exc}") from exc
        if not isinstance(profile, cls):
            raise ConfigError("reference profile is malformed: not a ReferenceProfile")
        return profile

    def save(self, path: Path) -> Path:
        path.write_text(self.to_json())
        return path


def load_profile(settings: Settings, model_name: str, version: str) -> ReferenceProfile:
    """The reference profile saved with a registered model version."""
    from mlflow.exceptions import MlflowException

    from prognos.registry.tracking import connect

    client = connect(settings)
    try:
        run_id = client.get_model_version(model_name, str(version)).run_id
    except MlflowException as exc:
        raise NotFoundError(f"no registered model {model_name!r} version {version}") from exc
    if not run_id:
        raise NotFoundError(f"{model_name!r} version {version} has no training run")
    return load_run_profile(settings, run_id, what=f"{model_name!r} version {version}")


def load_run_profile(settings: Settings, run_id: str, what: str = "") -> ReferenceProfile:
    """The reference profile among a training run's artifacts."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from prognos.registry.tracking import connect
    from prognos.training.flow import REFERENCE_PROFILE  # deferred: the training stack is heavy

    connect(settings)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=REFERENCE_PROFILE, dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            raise NotFoundError(
                f"{what or 'run ' + run_id} has no reference profile ({REFERENCE_PROFILE}): "
                "it was trained without one; retrain it with `prognos train`"
            ) from exc
        return ReferenceProfile.from_json(Path(path).read_text())


# -- JSON of nested dataclasses holding arrays: tagged, so loading needs no type hints -------


def _dump(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        body = {f.name: _dump(getattr(value, f.name)) for f in fields(value)}
        return {"__type__": type(value).__name__, **body}
    if isinstance(value, np.ndarray):
        kind = "int" if np.issubdtype(value.dtype, np.integer) else "float"
        return {"__array__": value.tolist(), "dtype": kind}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    return value


def _load(value: Any) -> Any:
    if isinstance(value, list):
        return [_load(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        dtype = np.intp if value.get("dtype") == "int" else np.float64
        return np.asarray(value["__array__"], dtype=dtype)
    body = {k: _load(v) for k, v in value.items() if k != "__type__"}
    if "__type__" in value:
        return _TYPES[value["__type__"]](**body)
    return body


_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        Normaliser,
        Conditions,
        Layout,
        Stages,
        Calibration,
        PredictionReference,
        ReferenceProfile,
    )
}
