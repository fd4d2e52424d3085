"""The compute process: it answers exactly as the model in this process does, errors included, and
the service survives losing it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prognos.errors import OutOfOrderReadingError, ReadingRejectedError, UnknownAssetError
from prognos.ingestion import compute
from prognos.ingestion.compute import ProcessScorer
from prognos.ingestion.loading import build_predictor, load_champion
from prognos.ingestion.scoring import ComputeLostError, LocalScorer, Work
from prognos.serving.app import create_app
from prognos.storage.database import Database
from tests.helpers.serving import body_for, open_settings, readings
from tests.helpers.trained import Trained


@pytest.fixture(scope="module")
def scorers(
    trained: Trained, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalScorer, ProcessScorer]]:
    empty = tmp_path_factory.mktemp("compute") / "empty.db"
    settings = trained.settings(database_url=f"sqlite:///{empty}")
    Database(f"sqlite:///{empty}").upgrade()
    loaded = load_champion(settings, trained.name)
    local = LocalScorer(build_predictor(settings, loaded))
    remote = ProcessScorer(settings, trained.name, loaded.version)
    assert not remote.ready  # it answers only once its state is rebuilt from the table
    try:
        assert remote.seed() == 0 and remote.ready  # an empty table: nothing to rebuild
        yield local, remote
    finally:
        remote.close()


def _channels(trained: Trained) -> list[dict[str, Any]]:
    rows = trained.fleet.groupby("asset_id").head(8).to_dict("records")
    return [{**row, "asset_id": str(row["asset_id"]), "time": int(row["time"])} for row in rows]


def rows_asset(trained: Trained) -> str:
    return str(_channels(trained)[0]["asset_id"])


def _work(trained: Trained) -> list[list[Work]]:
    rows = _channels(trained)
    first, second = rows[0], rows[1]
    broken = {**rows[2], "sensor_2": float("nan")}
    return [
        [("ingest", rows[:20], True)],
        # Scored with and without explanations, a repeat (idempotent) and an old reading.
        [("predict", rows[20:30], True), ("predict", rows[30:35], False)],
        [("predict", [second, first, broken], True)],
        [
            ("current", [first["asset_id"], "no-such-asset"], True),
            ("state", ["no-such-asset", first["asset_id"]], True),
            ("predict", [rows[34]], True),  # accepted above: a repeat, scored as it stands
        ],
    ]


def test_the_compute_process_answers_as_the_model_in_this_process(
    scorers: tuple[LocalScorer, ProcessScorer], trained: Trained
) -> None:
    local, remote = scorers
    assert remote.model == local.model and remote.mode == "process" and remote.pid != os.getpid()
    results = []
    for work in _work(trained):
        here, there = local.process(work), remote.process(work)
        results.append(there)
        assert there.accepted == here.accepted
        for a_row, b_row in zip(here.outcomes, there.outcomes, strict=True):
            for a, b in zip(a_row, b_row, strict=True):
                assert (type(a.error), str(a.error)) == (type(b.error), str(b.error))
                assert getattr(a.error, "reason", None) == getattr(b.error, "reason", None)
                assert (a.duplicate, a.state, a.model_version) == (
                    b.duplicate,
                    b.state,
                    b.model_version,
                )
                if a.prediction is None:
                    assert b.prediction is None
                    continue
                assert b.prediction is not None
                assert b.prediction.failure_probability == a.prediction.failure_probability
                assert (b.prediction.rul, b.prediction.risk_level) == (
                    a.prediction.rul,
                    a.prediction.risk_level,
                )
                explained = [p.explanation for p in (a.prediction, b.prediction)]
                if explained[0] is None:
                    assert explained[1] is None
                else:
                    assert explained[1] is not None
                    assert explained[0].to_dict() == explained[1].to_dict()
    # The errors crossed the pipe as the types the HTTP layer maps (409, 422, 404), reasons kept.
    ordered = results[2].outcomes[0]
    assert isinstance(ordered[0].error, OutOfOrderReadingError)
    assert ordered[0].error.reason == "out_of_order"
    assert isinstance(ordered[2].error, ReadingRejectedError)
    assert ordered[2].error.reason == "missing"
    current, states, repeat = results[3].outcomes
    assert isinstance(current[1].error, UnknownAssetError) and current[0].prediction is not None
    assert states[0].state is None and states[1].state is not None
    assert states[1].state.readings_seen == 8
    assert repeat[0].duplicate and repeat[0].prediction is not None
    assert results[0].accepted[:2] == [
        (0, 0, rows_asset(trained), 1),
        (0, 1, rows_asset(trained), 2),
    ]


def test_a_stopped_compute_process_fails_calls_clearly(trained: Trained) -> None:
    settings = trained.settings()
    version = load_champion(settings, trained.name).version
    scorer = ProcessScorer(settings, trained.name, version)
    try:
        os.kill(scorer.pid, signal.SIGKILL)
        with pytest.raises(ComputeLostError, match="compute process stopped"):
            scorer.process([("state", ["1"], False)])
        assert not scorer.alive
        with pytest.raises(ComputeLostError):
            scorer.process([("state", ["1"], False)])
    finally:
        scorer.close()


def test_a_stuck_compute_process_is_killed_and_reported(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = trained.settings()
    version = load_champion(settings, trained.name).version
    scorer = ProcessScorer(settings, trained.name, version)
    try:
        monkeypatch.setattr(compute, "CALL_TIMEOUT_S", 1.0)
        os.kill(scorer.pid, signal.SIGSTOP)  # alive, but it will never answer
        started = time.monotonic()
        with pytest.raises(ComputeLostError, match="no answer to 'process' in 1 s"):
            scorer.process([("state", ["1"], False)])
        assert time.monotonic() - started < 10
        assert not scorer.alive
    finally:
        scorer.close()


def test_the_service_replaces_a_lost_compute_process_and_keeps_the_state(
    trained: Trained, tmp_path: Path
) -> None:
    settings = open_settings(trained, tmp_path / "db.sqlite").model_copy(
        update={"model_poll_seconds": 3600.0}  # recovery must not wait for the poll
    )
    rows = readings(trained, 1, 20)
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert client.get("/health").json()["services"]["compute_mode"] == "process"
        answers = [client.post("/predict", json=body_for(r)).json() for r in rows[:-1]]
        assert all("prediction" in a for a in answers)
        first_pid = runtime.core.scorer.pid
        make_scorer, failed = runtime.core._make_scorer, []

        def fail_once(*args: Any) -> Any:  # the first new process fails to start
            if not failed:
                failed.append(True)
                raise ComputeLostError("compute process for tiny/1 failed to start: test")
            return make_scorer(*args)

        runtime.core._make_scorer = fail_once
        os.kill(first_pid, signal.SIGKILL)
        lost = client.post("/predict", json=body_for(rows[-1]))
        assert lost.status_code == 503 and "compute process stopped" in lost.json()["detail"]
        errors: set[str | None] = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            health = client.get("/health").json()
            if health["services"]["compute"] == "ok" and runtime.core.scorer.pid != first_pid:
                break
            assert health["status"] == "degraded" or runtime.core.scorer.pid != first_pid
            assert health["services"]["registry"] == "ok"  # the compute process failed, not it
            errors.add(health["detail"].get("compute_error"))
            time.sleep(0.2)
        else:
            pytest.fail("no new compute process within 120 s")
        assert health["status"] == "ok" and failed  # started on the retry (after ~5 s)
        assert "compute_error" not in health["detail"]
        assert "compute process for tiny/1 failed to start: test" in errors  # said so meanwhile
        # The new process rebuilt the asset's state from the stored readings: the reading the
        # lost process never answered for is accepted now, as the next one in order.
        again = client.post("/predict", json=body_for(rows[-1]))
        assert again.status_code == 200, again.text
        state = client.get(f"/assets/{rows[0]['asset_id']}").json()["state"]
        assert state["readings_seen"] == len(rows)
