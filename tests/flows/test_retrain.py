"""A retraining run: snapshot, train on original + labelled stored lives, register the
challenger, and audit every step; a failed run is audited too."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from prognos.errors import DataSourceError
from prognos.flows.retrain import retrain
from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.storage import repository
from prognos.storage.database import Database, database_url
from prognos.training.retrain_data import load_snapshot
from tests.helpers.loop import private_home
from tests.helpers.trained import Trained

FLEET = "retrain-fleet"


def _store(db: Database, readings: pd.DataFrame) -> None:
    values = [c for c in readings.columns if c not in ("asset_id", "time")]
    repository.insert_readings(
        db,
        [
            {
                "fleet": FLEET,
                "asset_id": f"live-{row['asset_id']}",
                "time": int(row["time"]),
                "values": {c: float(row[c]) for c in values},
            }
            for row in readings.to_dict("records")
        ],
    )
    last = readings.groupby("asset_id")["time"].max()
    repository.insert_feedback(
        db,
        [
            {
                "fleet": FLEET,
                "asset_id": f"live-{a}",
                "failure_occurred": True,
                "failure_cycle": int(t),
            }
            for a, t in last.items()
        ],
    )


def test_a_retraining_registers_an_audited_challenger_from_its_snapshot(
    trained: Trained, tmp_path: Path
) -> None:
    settings = private_home(trained, tmp_path / "home", fleet=FLEET, gate_min_f2=0.0,
                            gate_max_rmse=1e6)  # fmt: skip
    db = Database(database_url(settings))
    db.upgrade()
    try:
        _store(db, trained.fleet)
        champion = versions.champion(connect(settings), "tiny").version

        outcome = retrain(settings, "tiny", reason="test: new failures", trigger="labels")

        client = connect(settings)
        assert outcome.challenger and outcome.version == versions.challenger(client, "tiny").version
        assert versions.champion(client, "tiny").version == champion  # not promoted by itself
        assert outcome.counts["lives_failed"] == trained.fleet["asset_id"].nunique()
        snapshot = load_snapshot(outcome.snapshot)
        assert snapshot.content_hash == outcome.data_version
        run = client.get_run(outcome.run_id)
        assert run.data.tags["prognos.data_hash"] == outcome.data_version
        assert run.data.tags["prognos.retrain.reason"] == "test: new failures"
        actions = [e["action"] for e in reversed(repository.audit_events(db, subject="tiny"))]
        assert actions == [
            "retrain.triggered",
            "retrain.data",
            "retrain.registered",
            "retrain.succeeded",
        ]
    finally:
        db.dispose()


def test_a_failed_retraining_is_audited_as_failed_and_raises(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = private_home(trained, tmp_path / "home", fleet=FLEET)

    def unreadable(*args: object, **kwargs: object) -> None:
        raise DataSourceError("the original training data cannot be read")

    monkeypatch.setattr("prognos.flows.retrain.build_retraining_set", unreadable)
    with pytest.raises(DataSourceError):
        retrain(settings, "tiny", reason="scheduled", trigger="schedule")
    db = Database(database_url(settings))
    try:
        events = list(reversed(repository.audit_events(db, subject="tiny")))
    finally:
        db.dispose()
    assert [e["action"] for e in events] == ["retrain.triggered", "retrain.failed"]
    assert events[1]["details"]["error"].startswith("DataSourceError: the original")
    assert versions.challenger(connect(settings), "tiny") is None
