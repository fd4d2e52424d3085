"""The final model: the members the decision uses, refitted on every training row, and the
post-processing learned from the cross-validation's out-of-fold predictions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from prognos.features import FeaturePipeline
from prognos.fleet import FleetSpec
from prognos.models.base import ModelInput, Targets
from prognos.models.bundle import ModelBundle, PostProcessing, model_input
from prognos.training.config import TrainConfig
from prognos.training.cv import CVResult
from prognos.training.members import FinalTask, FitPool, cv_jobs

Progress = Callable[[str], None]


@dataclass
class FinalInputs:
    """The final model's feature pipeline and inputs: every training row."""

    pipeline: FeaturePipeline
    x: ModelInput
    y: Targets

    @classmethod
    def build(
        cls, readings: pd.DataFrame, labels: pd.DataFrame, fleet: FleetSpec, config: TrainConfig
    ) -> FinalInputs:
        pipeline = FeaturePipeline(fleet, config.features).fit(readings)
        y = Targets.of(labels)
        return cls(pipeline, model_input(pipeline, readings, config.window), y)

    def tasks(self, config: TrainConfig, members: list[str]) -> list[FinalTask]:
        """One fit per member, the network first (the longest fit, queued ahead of the rest)."""
        ordered = sorted(members, key=lambda name: name != "sequence")
        return [
            FinalTask(name, config.members[name].params, config.seed, self.x, self.y)  # type: ignore[index]
            for name in ordered
        ]


def fit_bundle(
    readings: pd.DataFrame,
    labels: pd.DataFrame,
    fleet: FleetSpec,
    config: TrainConfig,
    cv: CVResult,
    progress: Progress | None = None,
    jobs: int | None = None,
    *,
    pool: FitPool | None = None,
    inputs: FinalInputs | None = None,
) -> ModelBundle:
    """The final model: post-processing from the CV, and every member it uses refitted on all
    assets (side by side in worker processes where the CV's fits would be: ``jobs``; or in
    ``pool``, where :func:`train_labelled` queued them during the CV from ``inputs``)."""
    say = progress or (lambda _: None)
    inputs = inputs or FinalInputs.build(readings, labels, fleet, config)
    post = PostProcessing.fit(
        cv.oof,
        cv.ensemble,
        coverage=config.coverage,
        cost_missed=config.costs.missed_failure,
        cost_false_alarm=config.costs.false_alarm,
        select=config.select_members,
        rul_cap=float(config.rul_cap or fleet.labels.rul_cap),
    )
    tasks = inputs.tasks(config, post.members)  # a member with weight and slope 0 is not refitted
    for task in tasks:
        say(f"final fit: {task.member}")
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(FitPool(cv_jobs(jobs, len(readings), post.members)))
        fitted = pool.final(tasks)
    members = {name: fitted[name] for name in post.members}  # not in the order they finished
    return ModelBundle(
        fleet=fleet,
        pipeline=inputs.pipeline,
        window=config.window,
        horizon=int(config.horizon or fleet.labels.horizon),
        rul_cap=float(config.rul_cap or fleet.labels.rul_cap),
        members=members,
        post=post,
    )
