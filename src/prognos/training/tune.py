"""Hyperparameter search with Optuna over the same grouped cross-validation as training.

Each trial is one cross-validation (same folds and cuts for every trial, so trials compare fairly)
logged as a nested MLflow run; the best configuration is written as a TrainConfig YAML that
``prognos train --config`` takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd

from prognos.config import Settings
from prognos.data.dataset import FleetData
from prognos.registry.tracking import connect
from prognos.training.config import MemberConfig, TrainConfig
from prognos.training.cv import cross_validate
from prognos.training.flow import prepare
from prognos.training.members import make_member
from prognos.training.report import headline, metrics_table

Progress = Callable[[str], None]


def suggest(trial: optuna.Trial, member: str) -> dict[str, Any]:
    """The search space of one member (only parameters its estimator takes)."""
    if member == "xgboost":
        return {
            "learning_rate": trial.suggest_float("xgboost.learning_rate", 0.02, 0.2, log=True),
            "max_depth": trial.suggest_int("xgboost.max_depth", 3, 8),
            "min_child_weight": trial.suggest_float("xgboost.min_child_weight", 1, 50, log=True),
            "subsample": trial.suggest_float("xgboost.subsample", 0.6, 1.0),
            "colsample_bytree": trial.suggest_float("xgboost.colsample_bytree", 0.3, 1.0),
        }
    if member == "sequence":
        return {
            "arch": trial.suggest_categorical("sequence.arch", ["lstm", "cnn"]),
            "hidden": trial.suggest_categorical("sequence.hidden", [16, 32, 64]),
            "lr": trial.suggest_float("sequence.lr", 5e-4, 5e-3, log=True),
            "dropout": trial.suggest_float("sequence.dropout", 0.0, 0.3),
        }
    raise ValueError(f"no search space for member {member!r}")


def objective_value(metrics: pd.DataFrame) -> float:
    """Ensemble RMSE against capped RUL (lower is better); F2 is logged alongside."""
    value = headline(metrics)["rmse"]
    return value if math.isfinite(value) else math.inf


@dataclass
class TuneOutcome:
    """``default_value``: the base configuration's RMSE on the same folds (trial 0), so whether
    the search beat it is read off one study, not two runs."""

    best: TrainConfig
    best_value: float
    default_value: float
    trials: int
    study: optuna.Study


def default_params(config: TrainConfig, members: tuple[str, ...]) -> dict[str, Any]:
    """The configuration's own values of the searched parameters, named as Optuna names them:
    enqueued as trial 0, so a study says whether it beat the default on the same folds."""
    searched: dict[str, Any] = {}
    for member in members:
        estimator: Any = make_member(member, config.members[member].params, config.seed)  # type: ignore[index]
        effective = estimator.get_params()
        searched |= {f"{member}.{n}": effective[n] for n in _space_names(member)}
    return searched


class _Recorder:
    """Stands in for a trial to list the names :func:`suggest` asks for (nothing is sampled)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def _record(self, name: str, choices_or_low: Any, *_: Any, **__: Any) -> Any:
        self.names.append(name.split(".", 1)[1])
        return choices_or_low[0] if isinstance(choices_or_low, list) else choices_or_low

    suggest_float = suggest_int = suggest_categorical = _record


def _space_names(member: str) -> list[str]:
    recorder = _Recorder()
    suggest(recorder, member)  # type: ignore[arg-type]
    return recorder.names


def tune(
    data: FleetData,
    base: TrainConfig,
    settings: Settings,
    *,
    budget_s: float,
    max_trials: int | None = None,
    members: tuple[str, ...] = ("xgboost", "sequence"),
    progress: Progress | None = None,
) -> TuneOutcome:
    say = progress or (lambda _: None)
    readings, labels, _, fleet = prepare(data, base)
    connect(settings)
    # The forest baseline is not part of the ensemble: leave it out of the search's cost.
    searched = base.model_copy(
        update={
            "members": {**base.members, "forest": MemberConfig(enabled=False)},
        }
    )

    def objective(trial: optuna.Trial) -> float:
        config = _with_params(searched, {m: suggest(trial, m) for m in members})
        say(f"trial {trial.number}")
        with mlflow.start_run(run_name=f"tune-{fleet.name}-{trial.number}", nested=True):
            mlflow.log_params({k: str(v) for k, v in trial.params.items()})
            metrics = metrics_table(
                cross_validate(readings, labels, fleet, config),
                config.costs.missed_failure,
                config.costs.false_alarm,
            )
            value = objective_value(metrics)
            figures = headline(metrics)
            mlflow.log_metrics({k: v for k, v in figures.items() if np.isfinite(v)})
        trial.set_user_attr("f2", figures["f2"])
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=base.seed)
    )
    study.enqueue_trial(default_params(searched, members))
    with mlflow.start_run(run_name=f"tune-{fleet.name}"):
        mlflow.set_tag("prognos.fleet", fleet.name)
        study.optimize(objective, timeout=budget_s, n_trials=max_trials)
        mlflow.log_metric("best_rmse", study.best_value)
        mlflow.log_params({f"best.{k}": str(v) for k, v in study.best_params.items()})
    best = _with_params(base, _params_by_member(study.best_params))
    first = study.trials[0].value
    return TuneOutcome(
        best=best,
        best_value=study.best_value,
        default_value=math.inf if first is None else float(first),
        trials=len(study.trials),
        study=study,
    )


def _params_by_member(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        member, name = key.split(".", 1)
        grouped.setdefault(member, {})[name] = value
    return grouped


def _with_params(config: TrainConfig, params: dict[str, dict[str, Any]]) -> TrainConfig:
    members = dict(config.members)
    for member, values in params.items():
        current = members.get(member, MemberConfig())  # type: ignore[call-overload]
        members[member] = current.model_copy(update={"params": {**current.params, **values}})  # type: ignore[index]
    return config.model_copy(update={"members": members})
