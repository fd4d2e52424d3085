"""The retraining flow behind ``prognos retrain``: the champion's own configuration, trained again
on its original data plus the fleet's stored lives labelled by operator feedback, registered as the
``challenger`` for the service to shadow.

Every step goes to the audit log with the model's name as subject: ``retrain.triggered`` (why),
``retrain.data`` (the snapshot: content hash, counts, where it lies), ``retrain.registered`` (the
version and its cross-validation), then ``retrain.succeeded`` or ``retrain.failed`` (the alert
"training failed twice in a row" counts those).
"""

from __future__ import annotations

import getpass
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from prognos.config import Settings
from prognos.flows.promotion import cv_floors
from prognos.ingestion.loading import load_model
from prognos.models.bundle import ModelBundle
from prognos.monitoring.build import profile_from_training
from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.storage import audit
from prognos.storage.database import Database, open_database
from prognos.training.config import TrainConfig
from prognos.training.flow import code_version, train_labelled
from prognos.training.report import headline
from prognos.training.retrain_data import build_retraining_set

__all__ = ["RetrainOutcome", "retrain", "served_fleet_name"]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
ACTOR = "retrain"


@dataclass
class RetrainOutcome:
    name: str
    trigger: str
    reason: str
    parent_version: int
    data_version: str
    snapshot: Path
    counts: dict[str, Any]
    version: int | None
    run_id: str
    cv: dict[str, float]
    challenger: bool
    rejected: list[str]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trigger": self.trigger,
            "reason": self.reason,
            "parent_version": self.parent_version,
            "data_version": self.data_version,
            "snapshot": str(self.snapshot),
            "counts": self.counts,
            "version": self.version,
            "run_id": self.run_id,
            "cv": self.cv,
            "challenger": self.challenger,
            "rejected": self.rejected,
            "seconds": self.seconds,
        }


def served_fleet_name(settings: Settings, bundle: ModelBundle) -> str:
    """The fleet whose stored readings and feedback belong to this model (as the service files
    them: ``PROGNOS_FLEET``, else the model's fleet)."""
    return settings.fleet or bundle.fleet.name


def champion_config(client: MlflowClient, run_id: str) -> TrainConfig:
    """The configuration the champion was trained with (its run's ``train_config.yaml``): a
    retraining changes the data, not the recipe. The default configuration if it was not logged."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, "train_config.yaml", tmp)
        except (MlflowException, OSError) as exc:
            log.warning(
                "champion run %s has no train_config.yaml (%s): default config", run_id, exc
            )
            return TrainConfig()
        return TrainConfig.from_yaml(path)


def retrain(
    settings: Settings,
    name: str,
    *,
    reason: str,
    trigger: str = "manual",
    progress: Progress | None = None,
) -> RetrainOutcome:
    """Snapshot, train, register; the new version becomes the challenger if its cross-validation
    passes the floors (``gate_min_f2``, ``gate_max_rmse``). Raises what went wrong after writing
    ``retrain.failed``."""
    say = progress or (lambda _: None)
    started = time.perf_counter()
    client = connect(settings)
    current = versions.champion(client, name)
    if current is None:
        raise versions.RegistryError(
            f"{name!r} has no champion: retraining starts from one (train it with prognos train)"
        )
    settings.ensure_home()
    db = open_database(settings)
    try:
        actor = f"{ACTOR}:{getpass.getuser()}"
        audit.record(
            db,
            actor,
            "retrain.triggered",
            name,
            {"trigger": trigger, "reason": reason, "champion": current.version},
        )
        try:
            return _run(settings, db, client, name, current, reason, trigger, actor, say, started)
        except Exception as exc:
            audit.record(
                db,
                actor,
                "retrain.failed",
                name,
                {"trigger": trigger, "error": f"{type(exc).__name__}: {exc}"[:500]},
            )
            raise
    finally:
        db.dispose()


def _run(
    settings: Settings,
    db: Database,
    client: MlflowClient,
    name: str,
    current: versions.VersionInfo,
    reason: str,
    trigger: str,
    actor: str,
    say: Progress,
    started: float,
) -> RetrainOutcome:
    seconds: dict[str, float] = {}
    say(f"loading the champion ({name} version {current.version})")
    bundle = load_model(settings, name, str(current.version)).bundle
    config = champion_config(client, current.run_id)
    fleet = served_fleet_name(settings, bundle)
    say("building the retraining set (original data + stored lives labelled by feedback)")
    step = time.perf_counter()
    dataset = build_retraining_set(
        settings,
        db,
        bundle.fleet,
        fleet,
        original_source=bundle.metadata.get("source"),
        horizon=int(bundle.horizon),
        rul_cap=int(bundle.rul_cap),
    )
    snapshot = dataset.snapshot(settings.home / "snapshots")
    seconds["data"] = time.perf_counter() - step
    audit.record(
        db,
        actor,
        "retrain.data",
        name,
        {
            "data_version": dataset.data_hash,
            "code_version": code_version(),
            "snapshot": str(snapshot),
            "counts": dataset.counts,
        },
    )
    say(f"training on {len(dataset.readings):,} rows (data version {dataset.data_hash})")
    step = time.perf_counter()
    outcome = train_labelled(
        dataset.readings,
        dataset.labels,
        dataset.report,
        bundle.fleet,
        config,
        settings,
        source=f"snapshot:{snapshot}",
        name=name,
        progress=say,
        reference=profile_from_training,
        promote=False,  # the challenger, if its cross-validation passes the floors
        tags={
            "prognos.retrain.trigger": trigger,
            "prognos.retrain.reason": reason[:250],
            "prognos.retrain.parent": str(current.version),
            "prognos.snapshot": str(snapshot),
        },
        data_version=dataset.data_hash,
        groups=dataset.groups,
    )
    seconds["train"] = time.perf_counter() - step
    cv = headline(outcome.metrics)
    rejected = cv_floors(settings, cv)
    if not rejected and outcome.version is not None:
        versions.set_challenger(client, name, outcome.version)
    seconds["total"] = time.perf_counter() - started
    details = {
        "version": outcome.version,
        "run_id": outcome.run_id,
        "data_version": dataset.data_hash,
        "cv": {k: v for k, v in cv.items() if v == v},  # NaN is not JSON
        "challenger": not rejected,
        "rejected": rejected,
        "seconds": seconds,
    }
    audit.record(db, actor, "retrain.registered", name, details)
    if rejected:
        audit.record(db, actor, "retrain.failed", name, {"reasons": rejected, **details})
    else:
        audit.record(db, actor, "retrain.succeeded", name, details)
    return RetrainOutcome(
        name=name,
        trigger=trigger,
        reason=reason,
        parent_version=current.version,
        data_version=dataset.data_hash,
        snapshot=snapshot,
        counts=dataset.counts,
        version=outcome.version,
        run_id=outcome.run_id,
        cv=cv,
        challenger=not rejected,
        rejected=rejected,
        seconds=seconds,
    )
