"""Cross-validation grouped by asset, scored the way a test fleet is.

Each validation asset is cut at several random cycles and scored at its last observed cycle. The
features are causal (a row depends only on its asset's past), so scoring the full-history row at a
cut cycle is exactly scoring a trajectory truncated there: no re-computation per cut.

Everything chosen after the members (ensemble weights, calibration, alert threshold, interval
width) is cross-fitted: for the fold being scored it is learned on the other folds' out-of-fold
predictions only, so the reported ensemble figures never saw their own validation rows.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.model_selection import GroupKFold

from prognos.errors import ConfigError
from prognos.features import FeaturePipeline
from prognos.fleet import ASSET, TIME, FleetSpec
from prognos.models.base import ModelInput, Targets
from prognos.models.bundle import PostProcessing, model_input
from prognos.models.decision import conformal_min_rows
from prognos.training.config import TrainConfig
from prognos.training.members import FitPool, FoldFit, FoldTask, cv_jobs

Progress = Callable[[str], None]


def cut_rows(
    readings: pd.DataFrame, rul: pd.Series, cuts: int, max_rul: float, seed: int
) -> NDArray[np.intp]:
    """Positions of ``cuts`` random rows per asset whose true RUL is at most ``max_rul``."""
    rng = np.random.default_rng(seed)
    eligible = pd.Series(np.arange(len(readings)), index=readings.index)[
        (rul <= max_rul).to_numpy()
    ]
    groups = eligible.groupby(readings.loc[eligible.index, ASSET].to_numpy(), sort=True)
    chosen: list[NDArray[np.intp]] = []
    for _, positions in groups:
        take = min(cuts, len(positions))
        chosen.append(rng.choice(positions.to_numpy(), size=take, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.intp)


@dataclass
class CVResult:
    """Out-of-fold predictions at the cut points, per member and for the cross-fitted ensemble."""

    oof: pd.DataFrame
    members: list[str]
    ensemble: list[str]
    fit_seconds: dict[str, float] = field(default_factory=dict)
    fold_thresholds: list[float] = field(default_factory=list)


def cross_validate(
    readings: pd.DataFrame,
    labels: pd.DataFrame,
    fleet: FleetSpec,
    config: TrainConfig,
    progress: Progress | None = None,
    groups: pd.Series | None = None,
    jobs: int | None = None,
    pool: FitPool | None = None,
    then: Callable[[], None] | None = None,
) -> CVResult:
    """Grouped K-fold over assets; returns out-of-fold predictions at random cut points.

    ``groups``: the physical asset of each row when an asset's lives are separate training
    assets (a retraining set), so no asset is on both sides of a fold; the asset id otherwise.
    ``jobs``: worker processes fitting the (fold, member) pairs (None: chosen by
    :func:`~prognos.training.members.cv_jobs`), or ``pool``: the caller's workers, shared with
    its other fits. ``then`` is called once the first fold's fits are handed to the workers, while
    they fit: the caller queues other work (the final model's fits) behind them, ahead of the
    other folds (the longest fits first, so that the last folds' shorter ones fill the workers
    at the end).
    """
    say = progress or (lambda _: None)
    assets = (readings[ASSET] if groups is None else groups).to_numpy()
    n_assets = len(np.unique(assets))
    if n_assets < config.folds:
        raise ConfigError(
            f"{n_assets} assets cannot make {config.folds} cross-validation folds: "
            "lower 'folds' in the train config or add assets"
        )
    rul_cap = float(config.rul_cap or fleet.labels.rul_cap)
    targets = Targets.of(labels)
    members = config.active_members()
    splitter = GroupKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    # Folds and cut rows first (cheap, no model): whether the folds can be cross-fitted is known
    # before any member trains.
    plan: list[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]] = []
    for fold, (train_idx, val_idx) in enumerate(splitter.split(readings, groups=assets)):
        cuts = cut_rows(
            readings.iloc[val_idx],
            labels["rul"].iloc[val_idx],
            config.cuts_per_asset,
            config.max_cut_rul * rul_cap,
            config.seed + fold,
        )
        plan.append((train_idx, val_idx, cuts))
    _check_calibration_rows([assets[val_idx[cuts]] for _, val_idx, cuts in plan], config)
    frames: dict[int, pd.DataFrame] = {}

    def tasks() -> Iterator[FoldTask]:
        # Built as the fits ask for them: a fold's inputs exist only while its fits need them.
        for fold, (train_idx, val_idx, cuts) in enumerate(plan):
            train, val = readings.iloc[train_idx], readings.iloc[val_idx]
            pipeline = FeaturePipeline(fleet, config.features).fit(train)
            x_train = model_input(pipeline, train, config.window)
            x_val = model_input(pipeline, val, config.window, cuts)
            frames[fold] = _fold_frame(fold, readings, labels, targets, val_idx[cuts], x_val)
            for name in members:
                params = config.members[name].params  # type: ignore[index]
                yield FoldTask(
                    fold, name, params, config.seed, x_train, targets.take(train_idx), x_val
                )
            if fold == 0 and then is not None:
                then()

    fit_seconds = dict.fromkeys(members, 0.0)
    training_rows = len(readings) - min(len(val_idx) for _, val_idx, _ in plan)
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(FitPool(cv_jobs(jobs, training_rows, members)))
        for fit in pool.fit_folds(tasks()):
            _collect(fit, frames, fit_seconds, config, say)
    oof = pd.concat([frames[fold] for fold in sorted(frames)], ignore_index=True)
    ensemble = config.ensemble_members()
    thresholds = cross_fit(oof, members, ensemble, config, rul_cap)
    return CVResult(
        oof=oof,
        members=members,
        ensemble=ensemble,
        fit_seconds=fit_seconds,
        fold_thresholds=thresholds,
    )


def _collect(
    fit: FoldFit,
    frames: dict[int, pd.DataFrame],
    fit_seconds: dict[str, float],
    config: TrainConfig,
    say: Progress,
) -> None:
    """A fitted pair's validation predictions into its fold's frame."""
    name = fit.member
    if not (np.isfinite(fit.rul).all() and np.isfinite(fit.proba).all()):
        # Would otherwise surface later as a bare ValueError from the weights or metrics.
        raise ConfigError(
            f"member {name!r} predicted non-finite values on fold {fit.fold + 1} (a diverged "
            f"fit?): check members.{name}.params in the train config"
        )
    frame = frames[fit.fold]
    frame[f"rul__{name}"], frame[f"proba__{name}"] = fit.rul, fit.proba
    fit_seconds[name] += fit.seconds
    say(f"fold {fit.fold + 1}/{config.folds}: {name} ({fit.seconds:.0f} s)")


def _fold_frame(
    fold: int,
    readings: pd.DataFrame,
    labels: pd.DataFrame,
    targets: Targets,
    rows: NDArray[np.intp],
    x_val: ModelInput,
) -> pd.DataFrame:
    """A fold's scored rows (positions ``rows``) before the members' predictions join them."""
    return pd.DataFrame(
        {
            "fold": fold,
            ASSET: readings[ASSET].to_numpy()[rows],
            TIME: readings[TIME].to_numpy()[rows],
            "regime": x_val.features[:, x_val.feature_names.index("regime")]
            if "regime" in x_val.feature_names
            else 0.0,
            "rul": labels["rul"].to_numpy()[rows],
            "rul_capped": targets.rul[rows],
            "failed": targets.failed[rows],
        }
    )


def _check_calibration_rows(scored_assets: list[NDArray[Any]], config: TrainConfig) -> None:
    """Refuse folds whose cross-fitted post-processing would give an infinite RUL interval.

    ``scored_assets`` holds, per fold, the asset of each of its cut rows. Each fold is scored with
    post-processing learned on the other folds' cut rows only. The ensemble weights, slopes and
    thresholds are defined on any non-empty set of rows (the stack falls back to the base rate on
    one class), but the interval's two one-sided split-conformal offsets, each at level
    q = 1 - (1 - c) / 2, are finite only with at least q / (1 - q) rows (19 at 90%). Rule: every
    fold must leave that many cut rows outside it, i.e. ceil(rows / cuts_per_asset) assets with
    full cuts. The final model
    calibrates on all folds' rows, a superset, so its interval is then finite too. Refusing is the
    honest answer: any finite width from fewer rows would claim a coverage it cannot guarantee.
    """
    needed = conformal_min_rows(1.0 - (1.0 - config.coverage) / 2.0)
    total = sum(len(rows) for rows in scored_assets)
    for fold, rows in enumerate(scored_assets):
        outside = total - len(rows)
        if outside >= needed:
            continue
        n_assets = len(np.unique(np.concatenate(scored_assets)))
        in_fold = len(np.unique(rows))
        per_fold = math.ceil(needed / config.cuts_per_asset)  # assets needed outside each fold
        k = config.folds
        # Folds are asset-balanced (GroupKFold with shuffle), so the largest holds ceil(n / k).
        least = next(n for n in itertools.count(k) if n - math.ceil(n / k) >= per_fold)
        better = [
            f for f in range(k + 1, n_assets + 1) if n_assets - math.ceil(n_assets / f) >= per_fold
        ]
        hint = f"set folds: {better[0]}, " if better else ""
        raise ConfigError(
            f"{n_assets} assets cannot fill {k} cross-validation folds for a "
            f"{100 * config.coverage:g}% RUL interval: fold {fold + 1} holds {in_fold} of them, "
            f"leaving {outside} cut rows from {n_assets - in_fold} asset(s) on the other folds to "
            f"calibrate it, and a finite split-conformal interval needs at least {needed}; with "
            f"cuts_per_asset={config.cuts_per_asset} that takes {per_fold} assets outside every "
            f"fold, so at least {least} assets for folds={k}: {hint}add assets, raise "
            "cuts_per_asset or lower coverage in the train config"
        )


SCORED = ("rul", "rul_lower", "rul_upper", "proba", "alert", "alert_f2")


def cross_fit(
    oof: pd.DataFrame,
    members: list[str],
    ensemble: list[str],
    config: TrainConfig,
    rul_cap: float | None = None,
) -> list[float]:
    """Score each fold with post-processing learned on the other folds only.

    Adds columns ``{rul,rul_lower,rul_upper,proba,alert,alert_f2}@{model}`` for every member alone
    (its own calibration, threshold and interval) and for ``ensemble``.
    """
    models = {name: [name] for name in members}
    if ensemble:
        models["ensemble"] = ensemble
    for name in models:
        for column in SCORED:
            oof[f"{column}@{name}"] = np.nan
    thresholds = []
    for fold in sorted(oof["fold"].unique()):
        scored = (oof["fold"] == fold).to_numpy()
        others = oof[~scored]
        for name, parts in models.items():
            post = PostProcessing.fit(
                others,
                parts,
                coverage=config.coverage,
                cost_missed=config.costs.missed_failure,
                cost_false_alarm=config.costs.false_alarm,
                select=config.select_members,
                rul_cap=rul_cap,
            )
            out = post.apply(
                {m: oof.loc[scored, f"rul__{m}"].to_numpy() for m in parts},
                {m: oof.loc[scored, f"proba__{m}"].to_numpy() for m in parts},
            )
            for column in SCORED:
                oof.loc[scored, f"{column}@{name}"] = out[column]
            if name == "ensemble":
                thresholds.append(post.threshold)
    return thresholds
