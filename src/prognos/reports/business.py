"""The savings of a registered model: its cross-validation, and any scored fleet with outcomes.

:func:`savings_for_model` is the one entry point (the CLI's ``prognos report savings`` and the
dashboard's business view both call it). The policies and their arithmetic are in
:mod:`prognos.reports.savings`; this module finds the lives and the alerts:

- **cross-validation**: from the model's training run, its out-of-fold predictions
  (``oof_predictions.csv``): every asset scored by fold models that never saw it, with
  post-processing (calibration, threshold) cross-fitted. A life's length is ``time + rul`` at
  any of its cut rows (time counts cycles from 1, as the labels do); the first alert is the
  earliest cut row whose cross-fitted alert fires. The model is consulted only at the cut
  cycles (``cuts_per_asset`` random cycles per asset where the true RUL is at most
  ``max_cut_rul`` x the cap): the policy of an operator who checks at those cycles, and no alert
  is assumed earlier in life. Lives without a known failure (censored lives of a retraining
  set) are left out and counted.
- **a scored fleet** (``data``): whole run-to-failure trajectories, predicted at every reading by
  the registered model; the first alert is the first reading where it fires. The fixed interval
  is the one chosen on all the model's training lives. A fleet that is the model's own training
  data is flagged in-sample (optimistic).

Costs are the ones the model was trained with (its run's ``train_config.yaml``): they also set
its alert threshold, so pricing its alerts with other costs would judge a decision rule against
costs it was not made for. The configuration has no switch for other costs, so neither does this.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from prognos.config import Settings
from prognos.data.dataset import FleetData
from prognos.data.validation import validate_readings
from prognos.errors import ConfigError, DataValidationError, LabelError, NotFoundError
from prognos.fleet import ASSET, TIME
from prognos.models.bundle import ModelBundle
from prognos.reports import savings as policy
from prognos.reports.savings import PolicyCost, Savings
from prognos.training.config import TrainConfig

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

OOF_ARTIFACT = "oof_predictions.csv"
CONFIG_ARTIFACT = "train_config.yaml"


class SavingsEvaluation(BaseModel):
    """The three policies on one set of lives, and prognos's savings against the other two."""

    model_config = ConfigDict(extra="forbid")

    name: str  # "cross-validation" or the scored source
    lives: int
    left_out: int  # lives without a known failure
    policies: list[PolicyCost]  # run_to_failure, fixed_interval, prognos
    savings: list[Savings]  # against run_to_failure, against fixed_interval
    in_sample: bool = False
    notes: list[str] = []

    def policy(self, name: str) -> PolicyCost:
        return next(p for p in self.policies if p.policy == name)

    def against(self, name: str) -> Savings:
        return next(s for s in self.savings if s.against == name)


class ModelSavings(BaseModel):
    """What :func:`savings_for_model` returns: JSON-serialisable (``model_dump(mode="json")``)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    version: int
    run_id: str
    cost_missed_failure: float
    cost_preventive: float
    threshold: float | None
    alert_column: str
    interval: int  # T chosen on all the model's training lives (used on scored fleets)
    training_lives: int
    lead_time: int
    cross_validation: SavingsEvaluation
    scored: SavingsEvaluation | None = None
    assumptions: list[str]


def savings_for_model(
    settings: Settings,
    model: str,
    *,
    data: FleetData | None = None,
    lead_time: int = 0,
) -> ModelSavings:
    """Expected maintenance cost of acting on ``model``'s alerts against run-to-failure and the
    best fixed interval, on its cross-validation and, given ``data``, on that fleet.

    ``model``: ``NAME`` (its champion, else its latest version), ``NAME/VERSION``,
    ``NAME@ALIAS`` or ``models:/...`` of these. ``lead_time``: cycles an action takes after the
    alert (it prevents the failure only if it lands before it).
    """
    from prognos.registry.tracking import connect

    if lead_time < 0:
        raise ConfigError(f"lead time must be 0 or more cycles, got {lead_time}")
    if data is not None:
        _check_outcomes(data)
    client = connect(settings)
    name, version, run_id = _resolve(client, model)
    run = client.get_run(run_id)
    oof, config = _run_artifacts(client, run_id, f"{name} version {version}")
    c_f, c_p = config.costs.missed_failure, config.costs.false_alarm
    column = _alert_column(oof)
    lives = cv_lives(oof, column)
    known = lives.dropna(subset=["length"])
    if known.empty:
        raise LabelError(f"{name} version {version}: no cross-validated life ends in a failure")
    interval = policy.best_interval(known["length"], c_f, c_p)
    cv = _evaluate(
        "cross-validation",
        known,
        lead_time,
        c_f,
        c_p,
        fixed=policy.fixed_interval_cross_fitted(known["length"], known["fold"], c_f, c_p),
        left_out=len(lives) - len(known),
    )
    scored = None
    if data is not None:
        scored = _scored(
            settings, name, version, run.data.tags, data, interval, lead_time, c_f, c_p
        )
    threshold = run.data.metrics.get("threshold")
    return ModelSavings(
        model=name,
        version=version,
        run_id=run_id,
        cost_missed_failure=c_f,
        cost_preventive=c_p,
        threshold=threshold,
        alert_column=column,
        interval=interval,
        training_lives=len(known),
        lead_time=lead_time,
        cross_validation=cv,
        scored=scored,
        assumptions=_assumptions(config, c_f, c_p, lead_time),
    )


def cv_lives(oof: pd.DataFrame, alert_column: str) -> pd.DataFrame:
    """One row per cross-validated asset: ``fold``, ``length`` (NaN when its failure is not
    known) and ``alert_age`` (the earliest cut age whose alert fires; NaN when none)."""
    missing = {ASSET, TIME, "rul", "fold", alert_column} - set(oof.columns)
    if missing:
        raise ConfigError(f"out-of-fold predictions lack columns {sorted(missing)}")
    frame = pd.DataFrame(
        {
            ASSET: oof[ASSET],
            "fold": oof["fold"],
            "end": pd.to_numeric(oof[TIME], errors="coerce") + oof["rul"].astype("float64"),
            "alert_age": pd.to_numeric(oof[TIME], errors="coerce").where(
                oof[alert_column].astype("float64") >= 0.5
            ),
        }
    )
    frame.loc[~np.isfinite(frame["end"]), "end"] = np.nan
    grouped = frame.groupby(ASSET, sort=True)
    ends = grouped["end"].agg(["min", "max"])
    if ((ends["max"] - ends["min"]).abs() > 1e-6).any():
        raise ConfigError("out-of-fold rows of one asset disagree on its failure time")
    return pd.DataFrame(
        {
            "fold": grouped["fold"].first(),
            "length": ends["max"],
            "alert_age": grouped["alert_age"].min(),
        }
    )


def _evaluate(
    name: str,
    lives: pd.DataFrame,
    lead_time: int,
    c_f: float,
    c_p: float,
    *,
    fixed: PolicyCost,
    left_out: int = 0,
    in_sample: bool = False,
    notes: list[str] | None = None,
) -> SavingsEvaluation:
    lengths = lives["length"].to_numpy(dtype=np.float64)
    rtf = policy.run_to_failure(lengths, c_f, c_p)
    acted = policy.act_on_alerts(
        lengths, lives["alert_age"].to_numpy(dtype=np.float64) + lead_time, c_f, c_p
    )
    return SavingsEvaluation(
        name=name,
        lives=len(lives),
        left_out=left_out,
        policies=[rtf, fixed, acted],
        savings=[policy.savings(acted, rtf), policy.savings(acted, fixed)],
        in_sample=in_sample,
        notes=notes or [],
    )


def _scored(
    settings: Settings,
    name: str,
    version: int,
    tags: dict[str, str],
    data: FleetData,
    interval: int,
    lead_time: int,
    c_f: float,
    c_p: float,
) -> SavingsEvaluation:
    from prognos.training.flow import data_hash

    result = validate_readings(data.readings, data.spec)
    valid = result.valid.reset_index(drop=True)
    if valid.empty:
        raise DataValidationError(f"{data.source}: no valid rows to score")
    bundle = _load_bundle(name, version)
    predictions = bundle.predict(valid, last_only=False)
    frame = pd.DataFrame(
        {
            ASSET: valid[ASSET].to_numpy(),
            "length": valid[TIME].to_numpy(dtype=np.float64),
            "alert_age": np.where(
                predictions["alert"].to_numpy(), valid[TIME].to_numpy(dtype=np.float64), np.nan
            ),
        }
    )
    lives = frame.groupby(ASSET, sort=True).agg(
        length=("length", "max"), alert_age=("alert_age", "min")
    )
    in_sample = data_hash(valid, data.spec) == tags.get("prognos.data_hash")
    notes = [f"{result.report.quarantined_rows:,} readings failed validation and were not scored"]
    if in_sample:
        notes.append(
            "this is the model's own training data: in-sample, so the prognos figures are "
            "optimistic (use the cross-validation figures)"
        )
    fixed = policy.fixed_interval(lives["length"], interval, c_f, c_p)
    return _evaluate(
        data.source, lives, lead_time, c_f, c_p, fixed=fixed, in_sample=in_sample, notes=notes
    )


def _check_outcomes(data: FleetData) -> None:
    """Refuse, before any model is loaded, a fleet whose lives' failure ages are unknown."""
    if data.events is not None or not data.run_to_failure:
        raise LabelError(
            f"{data.source} has no known outcome per life: savings need whole run-to-failure "
            "trajectories (each asset's last reading is its failure). A trajectory cut before "
            "failure does not show what the model would have said after the cut"
        )
    if data.spec.time_kind != "cycle":
        raise ConfigError(f"{data.source}: savings are priced per cycle; this fleet has timestamps")


def _resolve(client: MlflowClient, model: str) -> tuple[str, int, str]:
    """(name, version, run id) of a model reference."""
    from mlflow.exceptions import MlflowException

    from prognos.registry import versions

    ref = model.removeprefix("models:/")
    alias = version = None
    if "@" in ref:
        ref, alias = ref.split("@", 1)
    elif "/" in ref:
        ref, version = ref.split("/", 1)
    name = ref
    infos = versions.list_versions(client, name)
    if version is not None and version != "latest":
        found = [i for i in infos if str(i.version) == version]
        if not found:
            raise versions.RegistryError(f"{name!r} has no version {version}")
        info = found[0]
    elif alias is not None:
        try:
            number = int(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            raise versions.RegistryError(f"{name!r} has no version aliased {alias!r}") from exc
        info = next(i for i in infos if i.version == number)
    elif version == "latest":
        info = infos[-1]
    else:
        info = next((i for i in infos if versions.CHAMPION in i.aliases), infos[-1])
    if not info.run_id:
        raise NotFoundError(f"{name!r} version {info.version} has no training run")
    return name, info.version, info.run_id


def _load_bundle(name: str, version: int) -> ModelBundle:
    """The registered version's bundle (MLflow already points at the settings' store)."""
    import mlflow

    from prognos.registry.versions import RegistryError

    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except Exception as exc:  # MLflow raises many types for a store or artifact problem
        raise RegistryError(f"cannot load {name} version {version}: {exc}") from exc
    bundle: ModelBundle = loaded.unwrap_python_model().bundle
    return bundle


def _run_artifacts(
    client: MlflowClient, run_id: str, what: str
) -> tuple[pd.DataFrame, TrainConfig]:
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            oof_path = client.download_artifacts(run_id, OOF_ARTIFACT, tmp)
        except (MlflowException, OSError) as exc:
            raise NotFoundError(
                f"{what} has no out-of-fold predictions ({OOF_ARTIFACT}) in its training run: "
                "retrain it with `prognos train`"
            ) from exc
        oof = pd.read_csv(oof_path)
        try:
            config_path = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        except (MlflowException, OSError) as exc:
            raise NotFoundError(f"{what} has no {CONFIG_ARTIFACT} in its training run") from exc
        return oof, TrainConfig.from_yaml(Path(config_path))


def _alert_column(oof: pd.DataFrame) -> str:
    if "alert@ensemble" in oof.columns:
        return "alert@ensemble"
    alerts = sorted(c for c in oof.columns if c.startswith("alert@"))
    if not alerts:
        raise ConfigError("out-of-fold predictions hold no alert column")
    return alerts[0]


def _assumptions(config: TrainConfig, c_f: float, c_p: float, lead_time: int) -> list[str]:
    return [
        f"costs from the model's training configuration: a failure {c_f:,.0f}, a preventive "
        f"action {c_p:,.0f} (the needless-inspection cost, charged for every action, a correct "
        "alert's too)",
        "policies compared by expected cost per cycle of operation (renewal-reward); after a "
        "failure or an action the asset is as good as new",
        "a life fails at the end of its last cycle; an action at age t prevents it only if "
        f"t + lead time ({lead_time}) < life length",
        "fixed interval: T chosen on training lives only (cross-fitted over the folds on "
        "cross-validation)",
        f"cross-validation: the model is consulted at {config.cuts_per_asset} random cycles per "
        f"asset where the true RUL is at most {config.max_cut_rul:g} x the RUL cap, scored by "
        "fold models that never saw the asset; no alert is assumed before the first of them",
    ]
