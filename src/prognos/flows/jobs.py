"""The train, monitor, retrain and gate jobs as plain functions of settings and plain parameters
(a source string, a model name): what a schedule can call with nothing else at hand. Each calls the
one function that does the work (:func:`prognos.training.flow.train`,
:func:`prognos.monitoring.live.run_live`, :func:`prognos.flows.retrain.retrain`,
:func:`prognos.flows.promotion.run_gate`); batch ingest is :mod:`prognos.flows.ingest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prognos.flows._common import load
from prognos.storage.database import open_database

if TYPE_CHECKING:
    from prognos.config import Settings
    from prognos.flows.promotion import GateVerdict
    from prognos.flows.retrain import RetrainOutcome
    from prognos.monitoring.live import LiveResult
    from prognos.training.flow import Progress, TrainOutcome

__all__ = ["RetrainCheck", "due_reasons", "gate", "monitor", "retrain_if_due", "train_source"]


def train_source(
    settings: Settings,
    source: str,
    *,
    name: str | None = None,
    config: Path | None = None,
    spec: Path | None = None,
    events: Path | None = None,
    progress: Progress | None = None,
) -> TrainOutcome:
    """``prognos train``: the source trained, registered and gated, with its drift reference."""
    from prognos.monitoring.build import profile_from_training
    from prognos.training.config import TrainConfig
    from prognos.training.flow import train

    train_config = TrainConfig.from_yaml(config) if config else TrainConfig()
    data = load(source, spec, events)
    return train(
        data,
        train_config,
        settings,
        name=name,
        progress=progress,
        reference=profile_from_training,
    )


def monitor(
    settings: Settings,
    name: str,
    *,
    version: str | None = None,
    fleet: str | None = None,
    now: datetime | None = None,
) -> LiveResult:
    """``prognos monitor run``: one live monitoring run of ``name`` (default: its champion) over
    the recent window ending ``now``, stored and reported."""
    from prognos.monitoring.live import load_monitored, profile_drift, run_live

    facts = load_monitored(settings, name, version)
    check, unavailable = profile_drift(settings, facts)
    db = open_database(settings)
    try:
        return run_live(
            settings, db, facts, fleet=fleet, drift=check, drift_unavailable=unavailable, now=now
        )
    finally:
        db.dispose()


def due_reasons(settings: Settings, name: str) -> list[str]:
    """Why ``name`` should be retrained now (:func:`~prognos.flows.triggers.check_triggers` on
    the fleet its champion serves); empty when it should not."""
    from prognos.flows.retrain import served_fleet_name
    from prognos.flows.triggers import check_triggers
    from prognos.ingestion.loading import load_champion

    fleet = served_fleet_name(settings, load_champion(settings, name).bundle)
    db = open_database(settings)
    try:
        return check_triggers(settings, name, db, fleet)
    finally:
        db.dispose()


@dataclass(frozen=True)
class RetrainCheck:
    """The retrain job's answer: the reasons it found (or was given), and the retraining they
    started (None when none held)."""

    reasons: list[str]
    outcome: RetrainOutcome | None

    def to_json(self) -> dict[str, Any]:
        return {
            "reasons": self.reasons,
            "retrained": self.outcome is not None,
            "outcome": None if self.outcome is None else self.outcome.to_json(),
        }


def retrain_if_due(
    settings: Settings,
    name: str,
    *,
    force: bool = False,
    reason: str = "on demand",
    progress: Progress | None = None,
) -> RetrainCheck:
    """Retrain ``name`` when a trigger holds (or at once when ``force``: then ``reason`` says
    why), as ``prognos retrain [--check]`` does."""
    from prognos.flows.retrain import retrain

    if force:
        reasons, trigger = [reason], "manual"
    else:
        reasons, trigger = due_reasons(settings, name), "monitoring"
        if not reasons:
            return RetrainCheck(reasons=[], outcome=None)
    outcome = retrain(settings, name, reason="; ".join(reasons), trigger=trigger, progress=progress)
    return RetrainCheck(reasons=reasons, outcome=outcome)


def gate(settings: Settings, name: str, *, now: datetime | None = None) -> GateVerdict:
    """``prognos models gate``: judge a shadowed challenger on the live outcomes and act on it
    (promote, reject, or wait for labels); nothing to judge without a challenger."""
    from prognos.flows.promotion import run_gate

    db = open_database(settings)
    try:
        return run_gate(settings, db, name, now=now)
    finally:
        db.dispose()
