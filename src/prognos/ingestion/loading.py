"""Loading a registered model version for serving: its bundle, its predictor and state store.

Used by the runtime (the model in this process) and by a compute process (the model in a process
of its own), so that neither imports the other.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

from prognos.config import Settings
from prognos.features.online import OnlineFeatures
from prognos.features.stores import make_state_store
from prognos.ingestion.predictor import Predictor
from prognos.models.bundle import ModelBundle


def settle_heap() -> None:
    """Put everything alive now (the model, the libraries) out of the cyclic collector's reach.

    Otherwise each full collection walks millions of long-lived objects: measured 200-400 ms
    pauses every few seconds under load, most of the p95 at 1000 users. ``gc.freeze()`` is
    CPython's tool for this; unfreezing first lets a replaced model's cycles be collected. The
    one collection here is a single pause per model load.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass
class LoadedModel:
    bundle: ModelBundle
    name: str
    version: str


def load_model(settings: Settings, name: str, version: str) -> LoadedModel:
    """One registered version's bundle, loaded by its number so we know exactly what we serve."""
    import mlflow

    from prognos.registry import versions
    from prognos.registry.tracking import connect

    connect(settings)  # models:/ URIs resolve against MLflow's current store
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except Exception as exc:  # MLflow raises many types for a store or artifact problem
        raise versions.RegistryError(f"cannot load {name} version {version}: {exc}") from exc
    bundle = model.unwrap_python_model().bundle
    return LoadedModel(bundle=bundle, name=name, version=str(version))


def load_champion(settings: Settings, name: str) -> LoadedModel:
    """The champion version's bundle."""
    from prognos.registry import versions

    version = champion_version(settings, name)
    if version is None:
        raise versions.RegistryError(f"registered model {name!r} has no champion")
    return load_model(settings, name, version)


def build_predictor(settings: Settings, model: LoadedModel) -> Predictor:
    """The model with its state store, whose key namespace follows the fleet (two fleets may
    both have an ``engine_1``) and the model's feature layout and scalers."""
    layout = OnlineFeatures(model.bundle.pipeline, window=model.bundle.window)
    fleet = settings.fleet if settings.fleet is not None else model.bundle.fleet.name
    store = make_state_store(
        settings, decode=layout.decode_state, fingerprint=f"{fleet}:{layout.fingerprint}"
    )
    return Predictor(model.bundle, store, model_name=model.name, model_version=model.version)


def champion_version(settings: Settings, name: str) -> str | None:
    from prognos.registry import versions
    from prognos.registry.tracking import connect

    current = versions.champion(connect(settings), name)
    return None if current is None else str(current.version)


def challenger_version(settings: Settings, name: str) -> str | None:
    """The version the ``challenger`` alias names, or None when there is none (or no such
    model). A registry that cannot be reached raises, so that the caller keeps a running shadow
    rather than stopping it: only an answer of "no challenger" stops one.

    One registry call (``versions.challenger`` also reads every version's run): it runs at
    every poll of the champion.
    """
    from mlflow.exceptions import MlflowException

    from prognos.registry import versions
    from prognos.registry.tracking import connect

    try:
        found = connect(settings).get_model_version_by_alias(name, versions.CHALLENGER)
    except MlflowException as exc:
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            # No such alias, or no such model (the codes a REST registry sends too).
            return None
        raise
    return str(found.version)


def served_fleet(settings: Settings, predictor: Predictor) -> str:
    """The fleet whose readings a served model takes and stores: ``PROGNOS_FLEET``, else the
    fleet the model was trained on."""
    return settings.fleet if settings.fleet is not None else predictor.bundle.fleet.name
