"""When retraining is due: drift or weak realised performance in the newest monitoring run, or
enough new labelled outcomes, since the model last changed. (The schedule is Prefect's; on demand
is ``prognos retrain``.)

"Since the model last changed" is the newest ``retrain.succeeded`` or champion move in the audit
log, else the champion version's registration: a drift that an earlier retraining already
answered does not trigger another.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from prognos.config import Settings
from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.storage import loop
from prognos.storage import monitoring as runs
from prognos.storage.database import Database

__all__ = ["CHANGES", "check_triggers", "model_changed_at"]

# Audit actions after which earlier monitoring and feedback no longer call for a retraining.
CHANGES = (
    "retrain.succeeded",
    "champion_promote",
    "champion_rollback",
    "gate.promoted",
    "gate.rejected",
)


def model_changed_at(db: Database, name: str, registered_ms: int) -> datetime:
    event = loop.last_event(db, name, CHANGES)
    registered = datetime.fromtimestamp(registered_ms / 1000, UTC)
    if event is None:
        return registered
    at: datetime = event["at"]
    return max(at, registered)


def _metric(metrics: list[dict[str, Any]], name: str) -> float:
    for m in metrics:
        if m["name"] == name and not m["label"]:
            return math.nan if m["value"] is None else float(m["value"])
    return math.nan


def check_triggers(settings: Settings, name: str, db: Database, fleet: str) -> list[str]:
    """Why ``name`` should be retrained now (empty: it should not, or a challenger is already
    being shadowed and must be judged first)."""
    client = connect(settings)
    if versions.challenger(client, name) is not None:
        return []
    current = versions.champion(client, name)
    if current is None:
        return []
    since = model_changed_at(db, name, current.created)
    reasons = []
    run = runs.latest_run(db, fleet=fleet, model_name=name, kind="live")
    if run is not None and run["started_at"] > since:
        if run["drift_detected"]:
            reasons.append(
                f"drift in monitoring run {run['id']} ({100 * run['share_drifted']:.0f}% of "
                "monitored columns)"
            )
        metrics = runs.run_metrics(db, run["id"])
        f2 = _metric(metrics, "model_f2_score_current")
        labelled = _metric(metrics, "model_predictions_labelled")
        if labelled >= settings.gate_min_labelled and f2 < settings.retrain_f2_below:
            reasons.append(
                f"realised F2 {f2:.3f} below {settings.retrain_f2_below:.2f} over "
                f"{int(labelled)} labelled predictions (run {run['id']})"
            )
    new_labels = loop.feedback_since(db, fleet, since)
    if new_labels >= settings.retrain_min_new_labels:
        reasons.append(
            f"{new_labels} new labelled outcomes since {since:%Y-%m-%d %H:%M} UTC "
            f"(at least {settings.retrain_min_new_labels})"
        )
    return reasons
