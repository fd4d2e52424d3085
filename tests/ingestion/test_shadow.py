"""The challenger's shadow: every served prediction is scored again by the ``challenger`` version,
logged with its version and ``shadow = true``, equal to what that version predicts from scratch,
never shown to clients; it stops with the alias, survives losing its process and rebuilds its
state when its queue overflows."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from prognos.ingestion import shadow as shadow_module
from prognos.ingestion.core import IngestionCore
from prognos.ingestion.loading import challenger_version, load_model
from prognos.ingestion.predictor import Predictor
from prognos.ingestion.shadow_jobs import Event, jobs, ordered
from prognos.registry import pyfunc, versions
from prognos.registry.tracking import EXPERIMENT, connect
from prognos.serving.app import create_app
from prognos.storage import repository
from prognos.storage.models import Prediction as PredictionRow
from prognos.storage.monitoring import window_predictions
from tests.helpers.serving import body_for, open_settings, readings
from tests.helpers.trained import Trained


@dataclasses.dataclass(frozen=True)
class Versions:
    champion: str
    challenger: str


@pytest.fixture(scope="module")
def registered(trained: Trained) -> Versions:
    """A second version of the tiny model that predicts otherwise (its blends put on the
    champion's least trusted member), registered once for the module, without an alias."""
    settings = trained.settings()
    client = connect(settings)
    champion = versions.champion(client, trained.name)
    assert champion is not None
    bundle = load_model(settings, trained.name, str(champion.version)).bundle
    post = bundle.post

    def least(weights: dict[str, float]) -> dict[str, float]:
        """Everything on the member the champion trusts least (blends are normalised)."""
        member = min(weights, key=weights.__getitem__)
        return {m: float(m == member) for m in weights}

    stack = copy.deepcopy(post.stack)
    stack.coef_ = least(stack.coef_)
    bundle.post = dataclasses.replace(post, rul_weights=least(post.rul_weights), stack=stack)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    with (
        tempfile.TemporaryDirectory() as folder,
        mlflow.start_run(experiment_id=experiment.experiment_id),
    ):
        path = pyfunc.save_bundle(bundle, Path(folder) / "bundle.pkl")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=pyfunc.PrognosModel(),
            artifacts={pyfunc.BUNDLE_ARTIFACT: str(path)},
            pip_requirements=["prognos"],
        )
    version = mlflow.register_model(info.model_uri, trained.name).version
    return Versions(str(champion.version), str(version))


@pytest.fixture
def challenger(trained: Trained, registered: Versions) -> Iterator[Versions]:
    """The second version under the ``challenger`` alias for one test."""
    client = connect(trained.settings())
    versions.set_challenger(client, trained.name, int(registered.challenger))
    try:
        yield registered
    finally:
        versions.clear_challenger(client, trained.name)


def wait_for(probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``probe()``'s first truthy answer, polled; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = probe()
        if answer:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s; last answer {probe()!r}")


def shadow_at(core: IngestionCore, **figures: Callable[[Any], bool]) -> dict[str, Any]:
    """The shadow's status once each named figure passes its check."""

    def probe() -> dict[str, Any] | None:
        status = None if core.shadows is None else core.shadows.status()
        ok = status is not None and all(check(status[k]) for k, check in figures.items())
        return status if ok else None

    found: dict[str, Any] = wait_for(probe)
    return found


def stored_predictions(core: IngestionCore) -> list[dict[str, Any]]:
    assert core.writer is not None and core.db is not None and core.writer.flush(10)
    table: sa.Table = PredictionRow.__table__  # type: ignore[assignment]
    with core.db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table)).mappings()]


def from_scratch(trained: Trained, version: str, rows: list[dict[str, Any]]) -> dict[Any, Any]:
    """What ``version`` predicts after each reading, with nothing before: (asset, time) ->
    (failure probability, RUL)."""
    bundle = load_model(trained.settings(), trained.name, version).bundle
    predictor = Predictor(bundle, model_name=trained.name, model_version=version)
    out = {}
    for row in rows:
        reading = {k: v for k, v in row.items() if k.startswith(("sensor", "setting"))}
        reading |= {"asset_id": str(row["asset_id"]), "time": row["time"]}
        scored = predictor.ingest(reading)
        [p] = predictor.score([scored], explain=False)
        out[(p.asset_id, p.time)] = (p.failure_probability, p.rul)
    return out


def assert_match(rows: list[dict[str, Any]], expected: dict[Any, Any]) -> None:
    for row in rows:
        probability, rul = expected[(row["asset_id"], row["time"])]
        assert row["failure_probability"] == pytest.approx(probability, rel=1e-6, abs=1e-9)
        assert row["rul"] == pytest.approx(rul, rel=1e-6, abs=1e-6)


def test_score_requests_follow_their_own_reading() -> None:
    now = datetime.now(UTC)
    events: list[Event] = [
        ("reading", {}, "a", 1),
        ("reading", {}, "a", 2),  # queued before the request for a at 1
        ("score", "a", 1, now),
        ("score", "a", 2, now),
        ("score", "b", 7, now),  # its reading came in an earlier batch: stays where it is
        ("score", "a", 2, now),  # a repeat
    ]
    assert [e[:3] for e in ordered(events)] == [
        ("reading", {}, "a"),
        ("score", "a", 1),
        ("reading", {}, "a"),
        ("score", "a", 2),
        ("score", "b", 7),
    ]
    # A reading and its own request are one "predict" item; the rest ingested or read.
    planned = jobs([("reading", {}, "c", 1), *ordered(events), ("reading", {}, "c", 2)])
    assert [(kind, [[e[0] for e in item] for item in items]) for kind, items in planned] == [
        ("ingest", [["reading"]]),
        ("predict", [["reading", "score"], ["reading", "score"]]),
        ("current", [["score"]]),
        ("ingest", [["reading"]]),
    ]


def test_the_challenger_scores_every_prediction_in_the_shadow(
    trained: Trained, challenger: Versions, tmp_path: Path
) -> None:
    settings = open_settings(trained, tmp_path / "db.sqlite")
    assert challenger_version(settings, trained.name) == challenger.challenger
    served, stored_only = readings(trained, 0, 30), readings(trained, 1, 12)
    other = str(stored_only[0]["asset_id"])
    with TestClient(create_app(settings)) as client:
        core = client.app.state.runtime.core  # type: ignore[attr-defined]
        shadow_at(core, state="ok".__eq__)
        answers = [client.post("/predict", json=body_for(r)).json() for r in served]
        ingested = client.post("/readings", json={"readings": [body_for(r) for r in stored_only]})
        assert ingested.status_code < 300, ingested.text
        batch = client.post("/batch-predict", json={"equipment_ids": [other]}).json()
        status = shadow_at(core, scored=(len(served) + 1).__eq__)
        health = client.get("/health").json()
        listed = client.get("/assets").json()["assets"]
        history = client.get(f"/assets/{served[0]['asset_id']}").json()["predictions"]
        rows = stored_predictions(core)
        shadow_rows = [r for r in rows if r["shadow"]]
        assert shadow_rows and repository.get_prediction(core.db, shadow_rows[0]["id"]) is None
        assert core.db is not None
        window = {
            flag: window_predictions(
                core.db, core.fleet, trained.name, challenger.challenger,
                datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC), 1000, shadow=flag,
            )
            for flag in (True, False, None)
        }  # fmt: skip

        versions.clear_challenger(connect(settings), trained.name)  # the alias goes
        client.portal.call(core.follow_challenger)  # type: ignore[union-attr]
        assert core.shadows.shadow is None and client.get("/health").json()["shadow"] is None
        client.post("/predict", json=body_for(readings(trained, 0, 31)[-1]))
        after = stored_predictions(core)
        audit = [e for e in repository.audit_events(core.db) if e["action"].startswith("shadow.")]

    # Every served prediction has its shadow: same asset and time, the challenger's version.
    champion_rows = [r for r in rows if not r["shadow"]]
    assert {r["model_version"] for r in champion_rows} == {challenger.champion}
    assert {r["model_version"] for r in shadow_rows} == {challenger.challenger}
    key = lambda r: (r["asset_id"], r["time"])  # noqa: E731
    assert sorted(map(key, shadow_rows)) == sorted(map(key, champion_rows))
    assert len(shadow_rows) == len(served) + 1 and status["missed"] == 0 == status["dropped"]
    # ... and is what that version predicts from the same readings, not the champion's answer.
    assert_match(shadow_rows, from_scratch(trained, challenger.challenger, served + stored_only))
    by_key = {key(r): r for r in champion_rows}
    assert all(r["rul"] != pytest.approx(by_key[key(r)]["rul"]) for r in shadow_rows)

    # Clients never see it: responses, the fleet, an asset's history, /explain by id.
    assert {a["model_version"] for a in answers} == {challenger.champion}
    assert {p["model_version"] for p in batch["predictions"]} == {challenger.champion}
    assert {a["prediction_id"] for a in listed} <= {r["id"] for r in champion_rows}
    assert len(history) == len(served) and all(not p.get("shadow") for p in history)
    assert {p["prediction_id"] for p in history} <= {r["id"] for r in champion_rows}
    assert health["status"] == "ok" and health["shadow"]["version"] == challenger.challenger
    # The gate reads them; live monitoring of the version (shadow=False) does not.
    assert len(window[True]) == len(shadow_rows) and len(window[False]) == 0
    assert len(window[None]) == len(shadow_rows)

    # Removing the alias stopped it: nothing more in its name, and both ends are in the audit log.
    assert len([r for r in after if r["shadow"]]) == len(shadow_rows)
    assert len(after) == len(rows) + 1
    stopped, started = audit[0], audit[1]
    assert (started["action"], stopped["action"]) == ("shadow.started", "shadow.stopped")
    assert started["details"]["champion"] == challenger.champion
    assert stopped["details"]["scored"] == len(shadow_rows)
    assert stopped["details"]["reason"] == "no challenger" and stopped["details"]["seconds"] > 0
    # The row ids are the shadow's own, never the ids the champion's predictions have.
    assert not {r["id"] for r in shadow_rows} & {r["id"] for r in champion_rows}


def test_a_shadow_whose_process_dies_fails_no_request_and_is_reported(
    trained: Trained, challenger: Versions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shadow_module, "RETRY_SECONDS", (1.0, 2.0))
    settings = open_settings(trained, tmp_path / "db.sqlite")
    rows = readings(trained, 2, 30)
    with TestClient(create_app(settings)) as client:
        core = client.app.state.runtime.core  # type: ignore[attr-defined]
        status = shadow_at(core, state="ok".__eq__)
        assert status["compute_mode"] == "process" and status["pid"] != os.getpid()
        before = [client.post("/predict", json=body_for(r)).status_code for r in rows[:10]]
        shadow_at(core, scored=(10).__eq__)
        killed = status["pid"]
        os.kill(killed, signal.SIGKILL)
        during = [client.post("/predict", json=body_for(r)).status_code for r in rows[10:20]]

        def failed() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get("/health").json()
            return body if body["shadow"]["failures"] >= 1 and body["shadow"]["error"] else None

        health = wait_for(failed)
        # Back by itself (a new process, its state rebuilt from the table), and right again.
        shadow_at(core, state="ok".__eq__, seeds=(2).__le__)
        after = [client.post("/predict", json=body_for(r)).status_code for r in rows[20:]]
        status = shadow_at(core, queued=(0).__eq__, scored=(20).__le__)
        shadow_rows = [r for r in stored_predictions(core) if r["shadow"]]
    assert set(before + during + after) == {200}
    assert health["status"] == "ok" and health["model_version"] == challenger.champion
    assert health["shadow"]["state"] in ("down", "starting", "seeding")
    assert "stopped" in health["shadow"]["error"]  # the pipe closed on the dead process
    assert status["pid"] not in (None, killed)
    served_after = {int(r["time"]) for r in rows[20:]}
    assert served_after <= {int(r["time"]) for r in shadow_rows}
    assert_match(shadow_rows, from_scratch(trained, challenger.challenger, rows))


def test_a_queue_overflow_drops_the_backlog_and_the_state_is_rebuilt(
    trained: Trained, challenger: Versions, tmp_path: Path
) -> None:
    # In this process (the other scorer kind), with a queue shorter than one request of 30
    # readings, long enough for the 10 predictions after (20 events within one linger).
    settings = open_settings(
        trained, tmp_path / "db.sqlite", compute_process=False, shadow_queue_max=24
    )
    rows = readings(trained, 3, 40)
    with TestClient(create_app(settings)) as client:
        core = client.app.state.runtime.core  # type: ignore[attr-defined]
        shadow_at(core, state="ok".__eq__)
        response = client.post("/readings", json={"readings": [body_for(r) for r in rows[:30]]})
        assert response.status_code < 300, response.text
        overflowed = shadow_at(core, dropped=(0).__lt__, seeds=(2).__le__, queued=(0).__eq__)
        assert overflowed["state"] == "ok" and overflowed["compute_mode"] == "thread"
        for row in rows[30:]:
            assert client.post("/predict", json=body_for(row)).status_code == 200
        status = shadow_at(core, scored=(10).__eq__)
        shadow_rows = [r for r in stored_predictions(core) if r["shadow"]]
    assert status["missed"] == 0
    assert sorted(int(r["time"]) for r in shadow_rows) == [int(r["time"]) for r in rows[30:]]
    assert_match(shadow_rows, from_scratch(trained, challenger.challenger, rows))


@pytest.mark.services
def test_in_redis_the_shadow_keeps_its_states_apart(
    trained: Trained, challenger: Versions, tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    import redis

    settings = open_settings(
        trained, tmp_path / "db.sqlite", compute_process=False, redis_url=redis_url,
        redis_namespace=redis_namespace,
    )  # fmt: skip
    rows = readings(trained, 4, 15)
    with TestClient(create_app(settings)) as client:
        core = client.app.state.runtime.core  # type: ignore[attr-defined]
        shadow_at(core, state="ok".__eq__)
        answers = [client.post("/predict", json=body_for(r)).json() for r in rows]
        shadow_at(core, scored=len(rows).__eq__)
        shadow_rows = [r for r in stored_predictions(core) if r["shadow"]]
    with contextlib.closing(redis.Redis.from_url(redis_url)) as server:
        keys = [k.decode() for k in server.scan_iter(f"{redis_namespace}:*:state:*")]
    asset = str(rows[0]["asset_id"])
    mine = [k for k in keys if k.startswith(f"{redis_namespace}:shadow:") and k.endswith(asset)]
    theirs = [k for k in keys if not k.startswith(f"{redis_namespace}:shadow:")]
    assert len(mine) == 1 and len([k for k in theirs if k.endswith(asset)]) == 1
    assert all(a["model_version"] == challenger.champion for a in answers)
    assert_match(shadow_rows, from_scratch(trained, challenger.challenger, rows))
