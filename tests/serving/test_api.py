"""The HTTP API on the embedded defaults (SQLite, in-process state): every endpoint, auth, limits,
validation, idempotency, restart recovery and a model swap under traffic."""

from __future__ import annotations

import gc
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from prognos.ingestion.loading import load_champion
from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.serving.app import create_app
from prognos.serving.schemas import BatchPredictOut, PredictionOut
from prognos.storage import api_keys, repository
from prognos.storage.database import Database, database_url
from tests.helpers.serving import body_for, open_settings, readings
from tests.helpers.trained import Trained

# A JSON content type only FastAPI's handler of /predict takes (its own route: application/json).
OTHER_JSON = "application/vnd.prognos+json"


@pytest.fixture
def service(trained: Trained, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    db_url = f"sqlite:///{tmp_path / 'service.db'}"
    settings = trained.settings(model_name=trained.name, database_url=db_url)
    db = Database(database_url(settings))
    db.upgrade()
    keys = {
        scope: api_keys.create_api_key(db, f"key-{scope}", [scope])[0]
        for scope in ("read", "predict", "ingest", "admin")
    }
    keys["limited"] = api_keys.create_api_key(db, "limited", ["predict"], 3)[0]
    db.dispose()
    with TestClient(create_app(settings)) as client:
        yield client, keys


def test_predict_answers_risk_rul_interval_and_why(
    service: tuple[TestClient, dict[str, str]], trained: Trained
) -> None:
    client, keys = service
    headers = {"X-API-Key": keys["predict"]}
    for row in readings(trained)[:-1]:
        assert client.post("/predict", json=body_for(row), headers=headers).status_code == 200
    response = client.post("/predict", json=body_for(readings(trained)[-1]), headers=headers)
    assert response.status_code == 200, response.text
    out = response.json()
    PredictionOut.model_validate(out)  # the hand-built payload has the documented shape
    p = out["prediction"]
    assert 0.0 <= p["failure_probability"] <= 1.0
    interval = p["rul_interval"]
    # Open above (null upper end) exactly when the model cannot bound it (the interval reached
    # the RUL cap); otherwise a closed interval around the estimate.
    assert interval["open_above"] == (interval["upper"] is None)
    upper = math.inf if interval["open_above"] else interval["upper"]
    assert interval["lower"] <= p["predicted_rul_cycles"] <= upper
    assert p["should_inspect"] == (p["failure_probability"] >= p["alert_threshold"])
    assert p["risk_level"] in {"LOW", "MEDIUM", "HIGH"}
    explanation = out["explanation"]
    top = explanation["top_features"]
    assert len(top) == 5
    # It explains the served probability itself, through every member with a slope above 0.
    assert explanation["output"] == "log_odds of the served failure probability"
    settings = client.app.state.runtime.settings  # type: ignore[attr-defined]
    stack = load_champion(settings, trained.name).bundle.post.stack
    assert explanation["members"] == pytest.approx({m: c for m, c in stack.coef_.items() if c > 0})
    q = p["failure_probability"]
    served = math.log(q) - math.log1p(-q)
    total = explanation["base"] + explanation["other"] + sum(f["contribution"] for f in top)
    assert explanation["logit"] == pytest.approx(served, abs=1e-9)
    assert total == pytest.approx(served, abs=1e-6)
    for f in top:
        assert sum(f["members"].values()) == pytest.approx(f["contribution"], abs=1e-12)
    sizes = [abs(f["contribution"]) for f in top]
    assert sizes == sorted(sizes, reverse=True)
    assert out["model_version"] == "1" and out["prediction_id"].startswith("pred_")
    assert out["latency_ms"] > 0


def test_explanation_adds_up_and_feedback_becomes_a_label(
    service: tuple[TestClient, dict[str, str]], trained: Trained
) -> None:
    client, keys = service
    headers = {"X-API-Key": keys["admin"]}
    out = {}
    for row in readings(trained, 1, 30):
        out = client.post("/predict", json=body_for(row), headers=headers).json()
    full = client.get(f"/explain/{out['prediction_id']}", headers=headers).json()
    explanation = full["explanation"]
    total = explanation["base"] + explanation["other"]
    total += sum(c["contribution"] for c in explanation["contributions"])
    assert total == pytest.approx(explanation["logit"], abs=1e-6)
    q = full["failure_probability"]
    assert explanation["logit"] == pytest.approx(math.log(q) - math.log1p(-q), abs=1e-9)
    assert len(explanation["contributions"]) == 10
    feedback = {
        "equipment_id": out["equipment_id"],
        "prediction_id": out["prediction_id"],
        "actual_outcome": {"failure_occurred": True, "failure_cycle": out["time"] + 12},
    }
    response = client.post("/feedback", json=feedback, headers=headers)
    assert response.status_code == 201, response.text
    accuracy = response.json()["prediction_accuracy"]
    assert accuracy["actual_rul_cycles"] == 12
    assert accuracy["error_cycles"] == pytest.approx(out["prediction"]["predicted_rul_cycles"] - 12)
    missing = dict(feedback, prediction_id="pred_nope")
    assert client.post("/feedback", json=missing, headers=headers).status_code == 404
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.core.writer.flush(10)
    labels = repository.feedback_labels(runtime.core.db)
    assert list(labels["prediction_id"]) == [out["prediction_id"]]
    assert bool(labels["failure_occurred"].iloc[0])
    assert client.get("/explain/pred_nope", headers=headers).status_code == 404


def test_keys_scopes_and_rate_limit(
    service: tuple[TestClient, dict[str, str]], trained: Trained
) -> None:
    client, keys = service
    row = readings(trained)[0]
    assert client.post("/predict", json=body_for(row)).status_code == 401
    # A body that does not validate takes FastAPI's handler: the key is still checked first.
    assert client.post("/predict", json={"cycle": "soon"}).status_code == 401
    assert client.post("/predict", json={}, headers={"X-API-Key": keys["read"]}).status_code == 403
    wrong = client.post("/predict", json=body_for(row), headers={"X-API-Key": "pk_wrong"})
    assert wrong.status_code == 401 and "unknown" in wrong.json()["detail"]
    forbidden = client.post("/predict", json=body_for(row), headers={"X-API-Key": keys["read"]})
    assert forbidden.status_code == 403 and "'predict' scope" in forbidden.json()["detail"]
    limited = {"X-API-Key": keys["limited"]}
    statuses = [
        client.post("/predict", json=body_for(r), headers=limited).status_code
        for r in readings(trained, 2, 5)
    ]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    last = client.post("/predict", json=body_for(row), headers=limited)
    assert 1 <= int(last.headers["Retry-After"]) <= 60
    assert client.get("/health").status_code == 200  # no key needed


def test_readings_are_idempotent_and_order_is_enforced(
    service: tuple[TestClient, dict[str, str]], trained: Trained
) -> None:
    client, keys = service
    headers = {"X-API-Key": keys["ingest"]}
    rows = readings(trained, 3, 10)
    batch = {"readings": [body_for(r) for r in rows[:6]]}
    first = client.post("/readings", json=batch, headers=headers).json()
    assert first["accepted"] == 6 and first["rejected"] == 0
    again = client.post("/readings", json=batch, headers=headers).json()
    assert again["accepted"] == 0 and again["rejected"] == 5 and again["duplicates"] == 1
    old = client.post("/readings", json=body_for(rows[2]), headers=headers)
    assert old.status_code == 409  # it clashes with what is stored
    result = old.json()["results"][0]
    assert result["reason"] == "out_of_order" and "older than the latest" in result["message"]
    mixed = {"readings": [body_for(rows[6]), body_for(rows[7], sensor_readings={})]}
    out = client.post("/readings", json=mixed, headers=headers).json()
    assert out["accepted"] == 1 and out["rejected"] == 1
    assert "lacks fields" in out["results"][1]["message"]
    # The latest time again with other values: a conflict naming both; the first one stands.
    sent = body_for(rows[6])
    name, value = next(iter(sent["sensor_readings"].items()))
    sent["sensor_readings"][name] = value + 1.0
    clash = client.post("/readings", json=sent, headers=headers)
    assert clash.status_code == 409, clash.text
    result = clash.json()["results"][0]
    assert result["reason"] == "conflict"
    assert f"{name}: accepted {value!r}, sent {value + 1.0!r}" in result["message"]
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.core.writer.flush(10)
    stored = repository.readings_for_asset(runtime.core.db, str(rows[0]["asset_id"]), 100)
    assert [r["time"] for r in stored] == [int(r["time"]) for r in rows[:7]]
    state = client.get(f"/assets/{rows[0]['asset_id']}", headers={"X-API-Key": keys["read"]})
    assert state.json()["state"]["readings_seen"] == 7


def test_a_resent_reading_gets_the_same_prediction_logged_once(
    service: tuple[TestClient, dict[str, str]], trained: Trained
) -> None:
    client, keys = service
    headers = {"X-API-Key": keys["admin"]}
    rows = readings(trained, 5, 2)
    answers = [client.post("/predict", json=body_for(r), headers=headers).json() for r in rows]
    # Resent as another JSON type, which only FastAPI's handler takes (``application/json``
    # takes /predict's own route): the two paths must answer alike.
    again = client.post("/predict", content=json.dumps(body_for(rows[1])),
                        headers={**headers, "Content-Type": OTHER_JSON})  # fmt: skip
    assert again.status_code == 200, again.text
    assert again.json()["prediction_id"] == answers[1]["prediction_id"]
    assert again.json()["prediction"] == answers[1]["prediction"]
    assert again.json()["explanation"] == answers[1]["explanation"]
    changed = body_for(rows[1])
    changed["sensor_readings"] = {k: v + 1.0 for k, v in changed["sensor_readings"].items()}
    clash = client.post("/predict", json=changed, headers=headers)
    assert clash.status_code == 409 and clash.json()["reason"] == "conflict"
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.core.writer.flush(10)
    logged = repository.predictions_for_asset(runtime.core.db, str(rows[0]["asset_id"]), 10)
    assert sorted(p["id"] for p in logged) == sorted(a["prediction_id"] for a in answers)


def test_bad_requests_get_clear_422s_and_413(
    service: tuple[TestClient, dict[str, str]], trained: Trained
) -> None:
    client, keys = service
    headers = {"X-API-Key": keys["predict"]}
    row = readings(trained)[0]
    sensors = body_for(row)["sensor_readings"]
    cases = [
        (body_for(row, sensor_readings={**sensors, "sensor_99": 1.0}), "sensor_99"),
        (body_for(row, timestamp="2026-01-01T00:00:00Z"), "exactly one of"),
        (body_for(row, cycle="soon"), "cycle"),
        (body_for(row, equipment_id=""), "equipment_id"),
        ({**body_for(row), "extra": 1}, "extra"),
    ]
    for body, needle in cases:
        response = client.post("/predict", json=body, headers=headers)
        assert response.status_code == 422, (needle, response.text)
        assert needle in response.text
        # The same from FastAPI's handler alone (see test_a_resent_reading...).
        other = client.post("/predict", content=json.dumps(body),
                            headers={**headers, "Content-Type": OTHER_JSON})  # fmt: skip
        assert other.json() == response.json()
    broken = client.post("/predict", content=b'{"equipment_id": ',
                         headers={**headers, "Content-Type": "application/json"})  # fmt: skip
    assert broken.status_code == 422 and "invalid JSON" in broken.json()["detail"]
    huge = client.post(
        "/readings",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and "limit" in huge.json()["detail"]
    # One asset, one time kind: this fleet counts cycles, so a timestamp is refused by name
    # (it would have been stored as ~1.8e18 "cycles", after which every cycle is "older").
    stamped = {k: v for k, v in body_for(row).items() if k != "cycle"}
    wrong = client.post("/predict", json={**stamped, "timestamp": "2026-01-01T00:00:00Z"},
                        headers=headers)  # fmt: skip
    assert wrong.status_code == 422 and wrong.json()["reason"] == "time_kind", wrong.text
    assert client.post("/predict", json=body_for(row), headers=headers).status_code == 200
    too_many = {"readings": [body_for(row)] * 1001}  # over PROGNOS_MAX_BATCH (1000)
    over = client.post("/readings", json=too_many, headers={"X-API-Key": keys["admin"]})
    assert over.status_code == 422 and "batch limit of 1000" in over.json()["detail"]


def test_batch_predict_by_ids_and_by_readings(
    service: tuple[TestClient, dict[str, str]], trained: Trained
) -> None:
    client, keys = service
    headers = {"X-API-Key": keys["admin"]}
    fleet = trained.fleet
    last = fleet.groupby("asset_id").head(25)
    response = client.post(
        "/batch-predict", json={"readings": [body_for(r) for r in last.to_dict("records")]},
        headers=headers,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    by_readings = response.json()
    assert by_readings["total_count"] == len(last) and not by_readings["errors"]
    ids = [str(a) for a in fleet["asset_id"].unique()]
    response = client.post(
        "/batch-predict", json={"equipment_ids": [*ids, "ghost"]}, headers=headers
    )
    out = response.json()
    BatchPredictOut.model_validate(out)
    assert out["total_count"] == len(ids)
    assert out["errors"] == [
        {
            "equipment_id": "ghost",
            "status": 404,
            "message": "no readings accepted for asset 'ghost'",
        }
    ]
    latest = {p["equipment_id"]: p for p in by_readings["predictions"]}  # last per asset wins
    for p in out["predictions"]:
        # Equal to float32 rounding: the network computes in float32, and a CPU's kernels may
        # round a row differently by batch size (seen on AMD EPYC: 6e-8 relative).
        assert p["prediction"]["failure_probability"] == pytest.approx(
            latest[p["equipment_id"]]["prediction"]["failure_probability"], rel=1e-6
        )
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.core.writer.flush(10)
    ranked = client.get("/assets", headers=headers).json()["assets"]
    probabilities = [a["failure_probability"] for a in ranked]
    assert len(ranked) == len(ids) and probabilities == sorted(probabilities, reverse=True)


def test_health_and_metrics(service: tuple[TestClient, dict[str, str]], trained: Trained) -> None:
    client, keys = service
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_version"] == "1"
    assert health["services"]["database"] == "ok" and health["services"]["registry"] == "ok"
    client.post(
        "/predict", json=body_for(readings(trained)[0]), headers={"X-API-Key": keys["predict"]}
    )
    text = client.get("/metrics").text
    assert 'prognos_api_requests_total{endpoint="/predict",method="POST",status="200"} 1.0' in text
    assert 'prognos_model_info{name="tiny",version="1"} 1.0' in text
    assert "prognos_predictions_total{risk_level=" in text
    assert 'prognos_dependency_up{dependency="database"} 1.0' in text


def test_a_record_the_database_refuses_later_is_counted_in_health_and_metrics(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation should make this impossible; if it happens anyway it must not go unseen."""
    from prognos.errors import StorageError
    from prognos.storage import writer as writer_module

    real = writer_module.insert_records

    def refuse_predictions(db: Any, records: Any, **kwargs: Any) -> Any:
        if "prediction" in records:
            raise StorageError("value out of range (test)")
        return real(db, records, **kwargs)

    monkeypatch.setattr(writer_module, "insert_records", refuse_predictions)
    with TestClient(create_app(open_settings(trained, tmp_path / "db.sqlite"))) as client:
        [row] = readings(trained, 1, 1)
        assert client.post("/predict", json=body_for(row)).status_code == 200
        health = client.get("/health").json()
        assert health["detail"]["log_records"]["rejected"] == 1
        assert "prognos_log_records_rejected 1.0" in client.get("/metrics").text


def test_restart_rebuilds_state_from_stored_readings(trained: Trained, tmp_path: Path) -> None:
    settings = open_settings(trained, tmp_path / "db.sqlite")
    rows = readings(trained, 4, 35)
    with TestClient(create_app(settings)) as client:
        for row in rows:
            before = client.post("/predict", json=body_for(row)).json()
    with TestClient(create_app(settings)) as client:
        asset = before["equipment_id"]
        after = client.post("/batch-predict", json={"equipment_ids": [asset]}).json()
        again = client.post("/predict", json=body_for(rows[-1])).json()
    p = after["predictions"][0]
    assert p["time"] == before["time"]
    assert p["prediction"]["failure_probability"] == before["prediction"]["failure_probability"]
    assert p["prediction"]["predicted_rul_cycles"] == before["prediction"]["predicted_rul_cycles"]
    assert again["prediction"] == before["prediction"]  # the repeat is idempotent


def test_champion_swap_without_restart_or_failed_requests(trained: Trained, tmp_path: Path) -> None:
    settings = open_settings(trained, tmp_path / "db.sqlite")
    client_mlflow = connect(settings)
    current = versions.champion(client_mlflow, trained.name)
    assert current is not None
    rows = pd.DataFrame(readings(trained, 5, 60))
    statuses: list[int] = []
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        stop = threading.Event()

        def traffic() -> None:
            for row in rows.to_dict("records"):
                if stop.is_set():
                    break
                statuses.append(client.post("/predict", json=body_for(row)).status_code)

        worker = threading.Thread(target=traffic)
        worker.start()
        new = mlflow.register_model(f"models:/{trained.name}/{current.version}", trained.name)
        versions.promote(client_mlflow, trained.name, int(new.version))
        try:
            swapped = client.portal.call(runtime.core.reload)  # type: ignore[union-attr]
        finally:
            stop.set()
            worker.join()
            versions.promote(client_mlflow, trained.name, current.version)
        assert swapped and runtime.core.model.version == str(new.version)
        assert client.get("/health").json()["model_version"] == str(new.version)
    assert len(statuses) > 0 and set(statuses) == {200}


def test_the_demo_sample_request_is_accepted(
    service: tuple[TestClient, dict[str, str]], trained: Trained
) -> None:
    import json
    import shlex

    from prognos.cli.demo import sample_request
    from prognos.data.simulator import SimulatorConfig, simulate_fleet

    client, keys = service
    line = sample_request(simulate_fleet(SimulatorConfig(n_assets=1, seed=1)), 8000)
    body = json.loads(shlex.split(line)[-1])
    response = client.post("/predict", json=body, headers={"X-API-Key": keys["predict"]})
    assert response.status_code == 200, response.text
    assert response.json()["equipment_id"] == "pump-001"


def test_without_a_champion_the_service_starts_degraded(trained: Trained, tmp_path: Path) -> None:
    settings = trained.settings(
        model_name="no-such-model", auth_enabled=False,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "degraded" and not body["model_loaded"]
        assert body["services"]["registry"] == "ok"  # reachable; the model has no champion
        assert "'no-such-model' has no champion" in body["detail"]["registry_error"]
        refused = client.post("/predict", json=body_for(readings(trained)[0]))
        assert refused.status_code == 503 and "no model is loaded" in refused.json()["detail"]


def test_the_loaded_model_is_kept_out_of_full_garbage_collections(
    trained: Trained, tmp_path: Path
) -> None:
    # In this process, to look at it (the compute process settles its heap the same way).
    settings = open_settings(trained, tmp_path / "db.sqlite", compute_process=False)
    gc.unfreeze()
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        frozen = gc.get_freeze_count()
        # The model is in the permanent generation, so full collections do not walk it.
        assert frozen > 10_000
        predictor = runtime.core.scorer.predictor
        assert not any(o is predictor for o in gc.get_objects(generation=2))
    assert gc.get_freeze_count() == 0  # handed back at shutdown


@pytest.mark.parametrize("compute_process", [True, False], ids=["process", "thread"])
def test_readings_that_arrive_during_a_swap_reach_the_new_model(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compute_process: bool
) -> None:
    settings = open_settings(trained, tmp_path / "db.sqlite", compute_process=compute_process)
    client_mlflow = connect(settings)
    current = versions.champion(client_mlflow, trained.name)
    assert current is not None
    rows = readings(trained, 2, 45)
    before, during, after = rows[:15], rows[15:30], rows[30:]
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        seeded, posted = threading.Event(), threading.Event()
        make_scorer = runtime.core._make_scorer

        def make_then_hold(*args: Any) -> Any:
            scorer = make_scorer(*args)
            seed = scorer.seed

            def seed_then_wait() -> int:
                # The new state is built from the table; readings now arrive before the swap.
                n = seed()
                seeded.set()
                assert posted.wait(30)
                return int(n)

            scorer.seed = seed_then_wait
            return scorer

        monkeypatch.setattr(runtime.core, "_make_scorer", make_then_hold)
        statuses = [client.post("/predict", json=body_for(r)).status_code for r in before]

        def traffic() -> None:
            assert seeded.wait(30)
            statuses.extend(client.post("/predict", json=body_for(r)).status_code for r in during)
            posted.set()

        worker = threading.Thread(target=traffic)
        worker.start()
        new = mlflow.register_model(f"models:/{trained.name}/{current.version}", trained.name)
        versions.promote(client_mlflow, trained.name, int(new.version))
        try:
            assert client.portal.call(runtime.core.reload)  # type: ignore[union-attr]
        finally:
            worker.join()
            versions.promote(client_mlflow, trained.name, current.version)
        assert runtime.core.model.version == str(new.version)
        swapped = [client.post("/predict", json=body_for(r)).json() for r in after]
        assert runtime.core.writer.flush(10)
        events = [
            e for e in repository.audit_events(runtime.core.db) if e["action"] == "model_loaded"
        ]
        stored = repository.readings_for_asset(
            runtime.core.db, str(rows[0]["asset_id"]), limit=1000
        )
    assert set(statuses) == {200}
    assert events[0]["details"]["replayed"] == len(during)
    assert len(stored) == len(rows)  # and every reading is stored once

    # A service that saw the same readings with no swap in between answers the same.
    fresh = open_settings(trained, tmp_path / "fresh.sqlite")
    with TestClient(create_app(fresh)) as client:
        plain = [client.post("/predict", json=body_for(r)).json() for r in rows][-len(after) :]
    for a, b in zip(swapped, plain, strict=True):
        assert a["prediction"]["failure_probability"] == pytest.approx(
            b["prediction"]["failure_probability"], rel=1e-9, abs=1e-12
        )
        assert a["prediction"]["predicted_rul_cycles"] == pytest.approx(
            b["prediction"]["predicted_rul_cycles"], rel=1e-9
        )
