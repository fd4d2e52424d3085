"""Retraining is due on drift, weak realised F2 or enough new labels, once per model change."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from prognos.config import Settings
from prognos.flows.triggers import check_triggers
from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.storage import audit, repository
from prognos.storage import monitoring as runs
from prognos.storage.database import Database, database_url
from prognos.storage.monitoring import Metric
from tests.helpers.loop import private_home, register_again
from tests.helpers.trained import Trained

FLEET = "trigger-fleet"


@pytest.fixture
def home(trained: Trained, tmp_path: Path) -> tuple[Settings, Database]:
    settings = private_home(trained, tmp_path / "home", fleet=FLEET, retrain_min_new_labels=3)
    db = Database(database_url(settings))
    db.upgrade()
    yield settings, db
    db.dispose()


def _run(db: Database, *, drift: bool, f2: float, labelled: int) -> str:
    now = datetime.now(UTC)
    return runs.write_run(
        db,
        {
            "started_at": now,
            "finished_at": now,
            "kind": "live",
            "fleet": FLEET,
            "model_name": "tiny",
            "model_version": "1",
            "drift_detected": drift,
            "share_drifted": 0.4 if drift else 0.0,
            "summary": {},
        },
        [
            Metric("model_f2_score_current", f2),
            Metric("model_predictions_labelled", float(labelled)),
        ],
    )


def _feedback(db: Database, n: int) -> None:
    repository.insert_feedback(
        db,
        [
            {"fleet": FLEET, "asset_id": f"a{i}", "failure_occurred": True, "failure_cycle": 90}
            for i in range(n)
        ],
    )


def test_nothing_is_due_on_a_quiet_fleet(home) -> None:
    settings, db = home
    _run(db, drift=False, f2=0.9, labelled=100)
    _feedback(db, 2)
    assert check_triggers(settings, "tiny", db, FLEET) == []


def test_drift_weak_f2_and_new_labels_each_trigger(home) -> None:
    settings, db = home
    run_id = _run(db, drift=True, f2=0.5, labelled=50)
    _feedback(db, 3)

    reasons = check_triggers(settings, "tiny", db, FLEET)

    assert len(reasons) == 3, reasons
    assert reasons[0].startswith(f"drift in monitoring run {run_id} (40%")
    assert reasons[1].startswith("realised F2 0.500 below 0.78 over 50 labelled")
    assert reasons[2].startswith("3 new labelled outcomes")


def test_a_weak_f2_on_too_few_labels_is_no_trigger(home) -> None:
    settings, db = home
    _run(db, drift=False, f2=0.1, labelled=5)
    assert check_triggers(settings, "tiny", db, FLEET) == []


def test_what_a_retraining_answered_does_not_trigger_again(home) -> None:
    settings, db = home
    _run(db, drift=True, f2=0.5, labelled=50)
    _feedback(db, 3)
    audit.record(db, "test", "retrain.succeeded", "tiny", {})
    assert check_triggers(settings, "tiny", db, FLEET) == []
    _feedback(db, 3)  # new outcomes after it count again
    assert [r.split(" new")[0] for r in check_triggers(settings, "tiny", db, FLEET)] == ["3"]


def test_a_challenger_being_shadowed_holds_the_triggers(home) -> None:
    settings, db = home
    _run(db, drift=True, f2=0.5, labelled=50)
    versions.set_challenger(connect(settings), "tiny", register_again(settings, "tiny"))
    assert check_triggers(settings, "tiny", db, FLEET) == []
