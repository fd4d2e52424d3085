"""The train flow behind ``prognos train``: validate, label, cross-validate, fit, log, register.

Each step is a plain function so the CLI, the Python API and (later) Prefect flows call the same
code; this module owns the order, not the work.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

import prognos
from prognos.config import Settings
from prognos.data.dataset import FleetData
from prognos.data.labels import run_to_failure_labels
from prognos.data.validation import ValidationReport, validate_readings
from prognos.errors import DataValidationError, LabelError
from prognos.fleet import ASSET, FleetSpec
from prognos.models.bundle import ModelBundle
from prognos.registry import pyfunc, versions
from prognos.registry.tracking import connect
from prognos.training.config import TrainConfig
from prognos.training.cv import CVResult, cross_validate
from prognos.training.final import FinalInputs, fit_bundle
from prognos.training.members import FitPool, cv_jobs, make_member
from prognos.training.plots import write_plots
from prognos.training.report import band_coverage, headline, metrics_table, regime_slices
from prognos.training.snapshot import prepare_snapshot, record_snapshot

Progress = Callable[[str], None]
# Builds the drift reference profile (JSON) from the training rows, their labels, the final
# bundle and the cross-validation's out-of-fold predictions. Passed in by the caller (the CLI passes
# prognos.monitoring.build.profile_from_training), since monitoring sits above training.
ReferenceBuilder = Callable[[pd.DataFrame, pd.DataFrame, ModelBundle, pd.DataFrame], str]
REFERENCE_PROFILE = "reference_profile.json"


@dataclass
class TrainOutcome:
    name: str
    run_id: str
    version: int | None
    promoted: bool
    gate: versions.GateDecision
    metrics: pd.DataFrame
    slices: pd.DataFrame
    warnings: list[str]
    validation: ValidationReport
    cv: CVResult
    bundle: ModelBundle
    seconds: dict[str, float] = field(default_factory=dict)
    snapshot: str | None = None  # the hash of the rows the run read (training.snapshot)


def prepare(
    data: FleetData, config: TrainConfig
) -> tuple[pd.DataFrame, pd.DataFrame, ValidationReport, FleetSpec]:
    """Valid rows and their labels; quarantined rows are reported, never trained on."""
    if not data.run_to_failure:
        raise LabelError(
            f"{data.source} does not run to failure (a test file or telemetry): training needs "
            "trajectories whose last reading is the failure"
        )
    result = validate_readings(data.readings, data.spec)
    if result.report.valid_rows == 0:
        raise DataValidationError(f"no valid rows in {data.source}:\n{result.report.summary()}")
    readings = result.valid.reset_index(drop=True)
    fleet = data.spec
    labels = run_to_failure_labels(
        readings,
        rul_cap=config.rul_cap or fleet.labels.rul_cap,
        horizon=config.horizon or fleet.labels.horizon,
    )
    return readings, labels, result.report, fleet


def data_hash(readings: pd.DataFrame, fleet: FleetSpec) -> str:
    """Content hash of the training rows and their spec: the data version of a run."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(readings, index=False).to_numpy().tobytes())
    digest.update(fleet.model_dump_json().encode())
    return digest.hexdigest()[:16]


def code_version() -> str:
    """The git commit of the running code when there is one, else the package version."""
    here = Path(prognos.__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return prognos.__version__
    return f"{commit}{'-dirty' if dirty else ''}"


def train(
    data: FleetData,
    config: TrainConfig,
    settings: Settings,
    *,
    name: str | None = None,
    progress: Progress | None = None,
    reference: ReferenceBuilder | None = None,
) -> TrainOutcome:
    """Validate, cross-validate, fit, log to MLflow, register and gate one fleet's model; the
    rows' snapshot is recorded (:mod:`prognos.training.snapshot`).

    ``reference`` builds the drift reference profile, logged with the run as
    :data:`REFERENCE_PROFILE` before the version is registered (so no version exists without it).
    """
    start = time.perf_counter()
    readings, labels, report, fleet = prepare(data, config)
    snapshot = prepare_snapshot(data)
    outcome = train_labelled(
        readings,
        labels,
        report,
        fleet,
        config,
        settings,
        source=data.source,
        name=name,
        progress=progress,
        reference=reference,
        tags=snapshot.tags(),
        started=start,
    )
    outcome.snapshot = snapshot.hash
    outcome.warnings.extend(
        record_snapshot(
            snapshot,
            settings,
            connect(settings),
            run_id=outcome.run_id,
            name=outcome.name,
            version=outcome.version,
        )
    )
    return outcome


def train_labelled(
    readings: pd.DataFrame,
    labels: pd.DataFrame,
    report: ValidationReport,
    fleet: FleetSpec,
    config: TrainConfig,
    settings: Settings,
    *,
    source: str,
    name: str | None = None,
    progress: Progress | None = None,
    reference: ReferenceBuilder | None = None,
    promote: bool = True,
    tags: dict[str, str] | None = None,
    data_version: str | None = None,
    groups: pd.Series | None = None,
    started: float | None = None,
) -> TrainOutcome:
    """:func:`train` from rows already validated and labelled (a retraining set joins stored
    lives labelled by feedback to the original data).

    ``promote`` False: the version is only registered, whatever its gate says (a retraining names
    it the challenger; the promotion gate decides later, on live outcomes).
    ``data_version``: the content hash of a snapshot that holds the rows (and labels) exactly;
    the hash of the rows otherwise. ``groups``: the physical asset of each row, for the folds
    (see :func:`~prognos.training.cv.cross_validate`).
    """
    say = progress or (lambda _: None)
    seconds: dict[str, float] = {}
    start = time.perf_counter() if started is None else started
    name = name or fleet.name
    say("cross-validation")
    members = config.active_members()
    ahead: list[FinalInputs] = []

    def start_final() -> None:
        # The final members do not depend on the CV's results (only which of them the decision
        # uses does), so their fits queue behind the first fold's; one the decision then drops
        # is stopped (FitPool.final).
        say("final fit: queued beside the cross-validation")
        ahead.append(FinalInputs.build(readings, labels, fleet, config))
        pool.start_final(ahead[0].tasks(config, config.ensemble_members()))

    with FitPool(cv_jobs(settings.train_jobs, len(readings), members)) as pool:
        cv = cross_validate(
            readings,
            labels,
            fleet,
            config,
            progress=say,
            groups=groups,
            pool=pool,
            then=start_final,
        )
        # Includes the final fits that finished beside the folds' (final_fit: the rest).
        seconds["cross_validation"] = time.perf_counter() - start
        costs = config.costs
        table = metrics_table(cv, costs.missed_failure, costs.false_alarm)
        slices, warnings = regime_slices(cv) if cv.ensemble else (pd.DataFrame(), [])
        fit_start = time.perf_counter()
        inputs = next(iter(ahead), None)
        bundle = fit_bundle(
            readings, labels, fleet, config, cv, progress=say, pool=pool, inputs=inputs
        )
        seconds["final_fit"] = time.perf_counter() - fit_start
    version = data_version or data_hash(readings, fleet)
    bundle.metadata.update(
        {
            "data_hash": version,
            "code_version": code_version(),
            "source": source,
            "metrics": headline(table),
            "trained_at": pd.Timestamp.now(tz="UTC").isoformat(),
        }
    )
    profile = None
    if reference is not None:
        say("reference profile")
        profile_start = time.perf_counter()
        profile = reference(readings, labels, bundle, cv.oof)
        seconds["reference_profile"] = time.perf_counter() - profile_start

    say("logging to MLflow")
    client = connect(settings)
    judged = headline(table)
    with mlflow.start_run(run_name=f"train-{name}") as run:
        mlflow.set_tags(
            {
                "prognos.fleet": name,
                "prognos.data_hash": version,
                "prognos.code_version": bundle.metadata["code_version"],
                "prognos.source": source,
                "prognos.folds": str(config.folds),
                "prognos.seed": str(config.seed),
                **(tags or {}),
            }
        )
        mlflow.log_params(_flat_params(config, readings))
        mlflow.log_metrics({k: v for k, v in judged.items() if np.isfinite(v)})
        for model in table.index:
            figures = headline(table.loc[[model]])
            mlflow.log_metrics({f"{model}.{k}": v for k, v in figures.items() if np.isfinite(v)})
        mlflow.log_metrics(
            {
                "threshold": bundle.post.threshold,
                "f2_threshold": bundle.post.f2_threshold,
                "train_rows": float(len(readings)),
                "train_assets": float(readings[ASSET].nunique()),
                "quarantined_rows": float(report.quarantined_rows),
                **{f"seconds.{k}": v for k, v in seconds.items()},
                **{f"seconds.cv_fit.{k}": v for k, v in cv.fit_seconds.items()},
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "train_config.yaml").write_text(
                yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
            )
            (folder / "fleet_spec.yaml").write_text(
                yaml.safe_dump(fleet.model_dump(mode="json"), sort_keys=False)
            )
            table.to_csv(folder / "cv_metrics.csv")
            if cv.ensemble:
                band_coverage(cv.oof, "ensemble").to_csv(folder / "interval_coverage_by_band.csv")
            slices.to_csv(folder / "regime_slices.csv")
            cv.oof.to_csv(folder / "oof_predictions.csv", index=False)
            (folder / "validation.json").write_text(report.model_dump_json(indent=2))
            if profile is not None:
                (folder / REFERENCE_PROFILE).write_text(profile)
            importances = getattr(bundle.members.get("xgboost"), "feature_importances_", None)
            write_plots(
                cv.oof, importances if isinstance(importances, dict) else None, folder / "plots"
            )
            mlflow.log_artifacts(str(folder))
            bundle_path = pyfunc.save_bundle(bundle, folder / "bundle.pkl")
            signature, example = pyfunc.signature_and_example(bundle, readings)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=pyfunc.PrognosModel(),
                artifacts={pyfunc.BUNDLE_ARTIFACT: str(bundle_path)},
                signature=signature,
                input_example=example,
                pip_requirements=[f"prognos=={prognos.__version__}"],
            )
        registered = mlflow.register_model(info.model_uri, name)
        run_id = run.info.run_id
    number = int(registered.version)
    decision = versions.gate(
        judged, config.gate, _champion_metrics(client, name, version, config, number)
    )
    if decision.passed and promote:
        versions.promote(client, name, number)
    client.set_model_version_tag(
        name,
        str(number),
        "prognos.gate",
        "passed" if decision.passed else "; ".join(decision.reasons),
    )
    seconds["total"] = time.perf_counter() - start
    return TrainOutcome(
        name=name,
        run_id=run_id,
        version=number,
        promoted=decision.passed and promote,
        gate=decision,
        metrics=table,
        slices=slices,
        warnings=warnings,
        validation=report,
        cv=cv,
        bundle=bundle,
        seconds=seconds,
    )


def _champion_metrics(
    client: MlflowClient, name: str, data_version: str, config: TrainConfig, candidate: int
) -> dict[str, float] | None:
    """The champion's CV figures, if they were measured on the same folds as the candidate's.

    Same folds means same data (hash), same number of folds, cuts and seed. A champion trained
    on other data cannot be compared on these folds from its logged figures; the gate then
    applies the floors only and says so in the version's tag.
    """
    current = versions.champion(client, name)
    if current is None or current.version == candidate:
        return None
    run = client.get_run(current.run_id)
    tags, params = run.data.tags, run.data.params
    same = (
        tags.get("prognos.data_hash") == data_version
        and params.get("folds") == str(config.folds)
        and params.get("cuts_per_asset") == str(config.cuts_per_asset)
        and tags.get("prognos.seed") == str(config.seed)
    )
    return dict(run.data.metrics) if same else None


def _flat_params(config: TrainConfig, readings: pd.DataFrame) -> dict[str, str]:
    flat = {
        "window": config.window,
        "folds": config.folds,
        "cuts_per_asset": config.cuts_per_asset,
        "max_cut_rul": config.max_cut_rul,
        "horizon": config.horizon,
        "rul_cap": config.rul_cap,
        "ensemble": ",".join(config.ensemble),
        "coverage": config.coverage,
        "cost_missed": config.costs.missed_failure,
        "cost_false_alarm": config.costs.false_alarm,
        "features": json.dumps(config.features.model_dump(mode="json"))[:500],
    }
    for member, settings in config.members.items():
        flat[f"{member}.enabled"] = settings.enabled
        # The estimator's effective parameters (its defaults included), not only those the
        # config overrides: the run must say which network and how many trees it trained.
        effective = make_member(member, settings.params, config.seed).get_params()  # type: ignore[attr-defined]
        for key, value in effective.items():
            flat[f"{member}.{key}"] = value
    return {k: str(v) for k, v in flat.items()}
