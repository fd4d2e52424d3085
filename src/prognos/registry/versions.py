"""Registered versions: the promotion gate, the ``champion`` alias, promote and rollback.

The champion's history is kept as a tag on the registered model, so rollback is one command and
every move is recorded (who moved it when is in MLflow's own version metadata).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel, ConfigDict, Field

from prognos.errors import PrognosError

CHAMPION = "champion"
# A version trained by the retraining loop, scored in the champion's shadow until the promotion
# gate decides on live outcomes.
CHALLENGER = "challenger"
_HISTORY_TAG = "prognos.champion_history"


class GateConfig(BaseModel):
    """What a new model must reach to become ``champion``."""

    model_config = ConfigDict(extra="forbid")

    min_f2: float = 0.0
    min_recall: float = 0.0
    max_rmse: float = float("inf")
    no_worse_than_champion: bool = True
    tolerance: float = Field(
        default=0.01, ge=0, description="Relative slack when comparing with the champion."
    )


class RegistryError(PrognosError):
    """A registered model or version that does not exist, or a move the registry refuses."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    run_id: str
    created: int
    aliases: list[str]
    metrics: dict[str, float]


def list_versions(client: MlflowClient, name: str) -> list[VersionInfo]:
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        raise RegistryError(f"cannot list versions of {name!r}: {exc}") from exc
    if not versions:
        raise RegistryError(f"no registered model named {name!r}")
    # Version search results do not carry aliases on every store: the model itself does.
    by_version: dict[int, list[str]] = {}
    for alias, number in (client.get_registered_model(name).aliases or {}).items():
        by_version.setdefault(int(number), []).append(alias)
    infos = []
    for v in versions:
        run = client.get_run(v.run_id) if v.run_id else None
        infos.append(
            VersionInfo(
                name=name,
                version=int(v.version),
                run_id=v.run_id or "",
                created=int(v.creation_timestamp or 0),
                aliases=sorted(by_version.get(int(v.version), [])),
                metrics=dict(run.data.metrics) if run else {},
            )
        )
    return sorted(infos, key=lambda i: i.version)


def champion(client: MlflowClient, name: str) -> VersionInfo | None:
    return _aliased(client, name, CHAMPION)


def challenger(client: MlflowClient, name: str) -> VersionInfo | None:
    """The version the ``challenger`` alias names, or None."""
    return _aliased(client, name, CHALLENGER)


def _aliased(client: MlflowClient, name: str, alias: str) -> VersionInfo | None:
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return next(v for v in list_versions(client, name) if v.version == int(version.version))


def set_challenger(client: MlflowClient, name: str, version: int) -> None:
    """Name ``version`` the challenger (a service sharing the registry starts its shadow)."""
    try:
        client.set_registered_model_alias(name, CHALLENGER, str(version))
    except MlflowException as exc:
        raise RegistryError(f"cannot make {name} version {version} the challenger: {exc}") from exc


def clear_challenger(client: MlflowClient, name: str) -> None:
    """Remove the ``challenger`` alias (the shadow stops); nothing happens without one."""
    try:
        client.delete_registered_model_alias(name, CHALLENGER)
    except MlflowException:
        return


def _history(client: MlflowClient, name: str) -> list[int]:
    tags = client.get_registered_model(name).tags or {}
    raw = tags.get(_HISTORY_TAG, "")
    return [int(v) for v in raw.split(",") if v]


def promote(client: MlflowClient, name: str, version: int) -> None:
    """Make ``version`` the champion and record the move."""
    known = {v.version for v in list_versions(client, name)}
    if version not in known:
        raise RegistryError(f"{name!r} has no version {version} (versions: {sorted(known)})")
    client.set_registered_model_alias(name, CHAMPION, str(version))
    current = challenger(client, name)
    if current is not None and current.version == version:
        clear_challenger(client, name)  # a champion is no longer its own challenger
    history = [v for v in _history(client, name) if v in known]
    client.set_registered_model_tag(name, _HISTORY_TAG, ",".join(map(str, [*history, version])))


def rollback(client: MlflowClient, name: str) -> int:
    """Move the champion back to the one before it; returns the version now champion."""
    history = _history(client, name)
    current = champion(client, name)
    if current is not None and history and history[-1] == current.version:
        history = history[:-1]
    if not history:
        raise RegistryError(f"{name!r} has no earlier champion to roll back to")
    previous = history[-1]
    client.set_registered_model_alias(name, CHAMPION, str(previous))
    client.set_registered_model_tag(name, _HISTORY_TAG, ",".join(map(str, history)))
    return previous


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]


def gate(
    candidate: dict[str, float], config: GateConfig, champion_metrics: dict[str, Any] | None
) -> GateDecision:
    """Floors on F2, recall and RMSE, and no worse than the champion on the same folds.

    ``champion_metrics`` must come from the same cross-validation folds (same data, same split)
    for the comparison to mean anything; the caller guarantees that or passes None.
    """
    reasons = []
    f2, recall, rmse = candidate["f2"], candidate["recall"], candidate["rmse"]
    if not f2 >= config.min_f2:
        reasons.append(f"F2 {f2:.3f} below the floor {config.min_f2:.3f}")
    if not recall >= config.min_recall:
        reasons.append(f"recall {recall:.3f} below the floor {config.min_recall:.3f}")
    if not rmse <= config.max_rmse:
        reasons.append(f"RMSE {rmse:.2f} above the ceiling {config.max_rmse:.2f}")
    if config.no_worse_than_champion and champion_metrics:
        slack = 1.0 + config.tolerance
        best_rmse = champion_metrics.get("rmse", math.inf)
        best_f2 = champion_metrics.get("f2", 0.0)
        if rmse > best_rmse * slack:
            reasons.append(f"RMSE {rmse:.2f} worse than the champion's {best_rmse:.2f}")
        if f2 < best_f2 / slack:
            reasons.append(f"F2 {f2:.3f} worse than the champion's {best_f2:.3f}")
    return GateDecision(passed=not reasons, reasons=reasons)
