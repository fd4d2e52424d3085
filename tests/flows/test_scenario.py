"""A shorter run of ``prognos demo --loop``'s scenario: every stage of the loop happens, in order,
and leaves its trace in the audit log."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from prognos.config import get_settings
from prognos.flows.scenario import LoopPlan, run_loop
from prognos.storage.database import Database, database_url
from prognos.storage.models import Prediction

SMALL = {
    "folds": 3,
    "cuts_per_asset": 4,
    "members": {
        "xgboost": {"params": {"n_estimators": 40}},
        "sequence": {"params": {"max_epochs": 2, "hidden": 8}},
        "forest": {"enabled": False},
    },
}


@pytest.mark.slow
def test_the_loop_detects_alerts_retrains_shadows_and_decides(tmp_path: Path) -> None:
    plan = LoopPlan(train_assets=18, live_assets=12, rate=1500.0, seed=3, training=SMALL)
    settings = get_settings(home=tmp_path / "home", retrain_min_new_labels=10)

    result = run_loop(settings, plan, say=lambda _: None)

    assert result.monitoring.drift_detected
    assert any("data_drift_share firing" in line for line in result.alerts), result.alerts
    assert any(reason.startswith("drift in monitoring run") for reason in result.triggers)
    assert any("new labelled outcomes" in reason for reason in result.triggers)
    assert result.retrained.counts["lives_failed"] == 12
    assert result.retrained.challenger, result.retrained.rejected
    assert result.failures1 == result.failures2 == 12
    # Every prediction the champion served on the second wave was shadowed by the challenger.
    db = Database(database_url(settings.model_copy(update={"fleet": plan.fleet})))
    try:
        with db.engine.connect() as conn:
            counts = dict(
                conn.execute(
                    select(Prediction.shadow, func.count())
                    .where(Prediction.asset_id.like("w2-%"))
                    .group_by(Prediction.shadow)
                ).all()
            )
    finally:
        db.dispose()
    stopped = [e["details"] for e in result.audit if e["action"] == "shadow.stopped"]
    assert counts[True] == counts[False] > 0, stopped
    assert result.verdict.verdict in ("promote", "reject")
    assert result.verdict.figures["shared_predictions"] == counts[True]
    actions = [e["action"] for e in result.audit]
    expected = [
        "retrain.triggered",
        "retrain.data",
        "retrain.registered",
        "retrain.succeeded",
        "shadow.started",
        "shadow.stopped",
        f"gate.{'promoted' if result.verdict.verdict == 'promote' else 'rejected'}",
    ]
    positions = [actions.index(a) for a in expected]
    assert positions == sorted(positions), actions
