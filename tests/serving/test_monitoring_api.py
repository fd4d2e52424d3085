"""GET /monitoring/latest and /monitoring/runs, and the monitoring gauges on /metrics: the stored
values, the read scope, stale figures kept through a database outage, multiprocess mode."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from prognos.config import get_settings
from prognos.errors import StorageUnavailableError
from prognos.monitoring.live import run_live
from prognos.serving import monitoring_gauges
from prognos.serving.app import create_app
from prognos.serving.monitoring_gauges import MonitoringGauges
from prognos.serving.telemetry import Telemetry
from prognos.storage import Database, api_keys, insert_records
from prognos.storage import monitoring as store
from tests.helpers import monitoring as case
from tests.helpers.trained import Trained


def seeded(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    insert_records(
        db,
        {
            "reading": case.reading_rows(),
            "prediction": case.prediction_rows(),
            "feedback": [*case.feedback_rows(), case.LATE_FEEDBACK],
        },
    )
    return db


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


RUN_LABELS = {"fleet": case.FLEET, "model_name": case.MODEL, "model_version": case.VERSION}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset({**RUN_LABELS, **labels}.items())


@pytest.mark.slow
def test_latest_runs_and_gauges_serve_the_stored_figures(trained: Trained, tmp_path: Path) -> None:
    db = seeded(tmp_path / "service.db")
    keys = {s: api_keys.create_api_key(db, f"k-{s}", [s])[0] for s in ("read", "predict")}
    settings = trained.settings(
        model_name=trained.name,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        monitoring_refresh_seconds=0.05,
        monitoring_coverage_min_count=3,
    )
    read = {"X-API-Key": keys["read"]}
    with TestClient(create_app(settings)) as client:
        assert client.get("/monitoring/latest", headers=read).status_code == 404
        assert client.get("/monitoring/runs", headers=read).json() == {"runs": [], "count": 0}
        assert "model_f2_score_current" not in client.get("/metrics").text

        first = run_live(settings, db, case.MODEL_FACTS, now=case.NOW)
        second = run_live(settings, db, case.MODEL_FACTS, now=case.NOW)
        assert client.get("/monitoring/latest").status_code == 401
        denied = client.get("/monitoring/latest", headers={"X-API-Key": keys["predict"]})
        assert denied.status_code == 403

        latest = client.get("/monitoring/latest", headers=read)
        assert latest.status_code == 200, latest.text
        body = latest.json()
        assert body["id"] == second.run_id and body["kind"] == "live"
        assert body["summary"]["performance"]["counts"]["unlabelled"] == 1
        stored = {(m["name"], m["label"]): m["value"] for m in store.run_metrics(db, body["id"])}
        assert {(m["name"], m["label"]): m["value"] for m in body["metrics"]} == stored
        assert client.get("/monitoring/latest?fleet=nowhere", headers=read).status_code == 404

        runs = client.get("/monitoring/runs?limit=1", headers=read).json()
        assert runs["count"] == 1 and runs["runs"][0]["id"] == second.run_id
        assert "metrics" not in runs["runs"][0]
        both = client.get("/monitoring/runs", headers=read).json()["runs"]
        assert [r["id"] for r in both] == [second.run_id, first.run_id]
        assert client.get("/monitoring/runs?limit=0", headers=read).status_code == 422

        time.sleep(0.1)  # past the refresh interval
        got = samples(client.get("/metrics").text)
    assert got[key("model_f2_score_current")] == pytest.approx(
        stored[("model_f2_score_current", "")]
    )
    assert got[key("model_precision_current")] == pytest.approx(2 / 3)
    assert got[key("model_recall_current")] == pytest.approx(2 / 3)
    assert got[key("model_false_alarm_rate")] == pytest.approx(1 / 7)
    assert got[key("model_predictions_unlabelled")] == 1
    assert got[key("model_interval_coverage_current")] == pytest.approx(5 / 6)
    assert got[key("model_interval_coverage_out_of_band")] == 0
    assert got[key("model_f2_score_estimated", scope="all")] == pytest.approx(
        stored[("model_f2_score_estimated", "all")]
    )
    assert got[key("data_missing_value_rate")] == pytest.approx(1 / 330)
    assert got[key("data_missing_value_rate", feature_name="sensor_2")] == pytest.approx(1 / 110)
    assert got[key("data_outliers_total", feature_name="sensor_1")] == 1
    assert got[key("monitoring_run_timestamp_seconds")] == pytest.approx(
        second.finished_at.timestamp()
    )
    db.dispose()


def test_gauges_keep_the_last_figures_through_a_database_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = seeded(tmp_path / "m.db")
    result = run_live(get_settings(home=tmp_path), db, case.MODEL_FACTS, now=case.NOW)
    telemetry = Telemetry()
    gauges = MonitoringGauges(db, refresh_seconds=0.0, wait_seconds=0.5)
    telemetry.add_shared(gauges)
    before = samples(telemetry.exposition().body.decode())
    assert before[key("model_f2_score_current")] == pytest.approx(2 / 3)

    def down(_db: Database) -> None:
        raise StorageUnavailableError("database is down (test)")

    monkeypatch.setattr(monitoring_gauges.store, "latest_runs_by_model", down)
    started = time.monotonic()
    during = samples(telemetry.exposition().body.decode())
    assert time.monotonic() - started < 1.0
    assert during[key("model_f2_score_current")] == pytest.approx(2 / 3)
    assert gauges.last_error == "database is down (test)"
    assert during[key("monitoring_run_timestamp_seconds")] == result.finished_at.timestamp()
    db.dispose()


def test_a_hung_database_delays_a_scrape_by_the_wait_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def hang(_db: Database) -> list[object]:
        release.wait(5)
        return []

    monkeypatch.setattr(monitoring_gauges.store, "latest_runs_by_model", hang)
    gauges = MonitoringGauges(Database("sqlite://"), refresh_seconds=0.0, wait_seconds=0.2)
    started = time.monotonic()
    assert list(gauges.collect()) == []
    assert time.monotonic() - started < 1.0
    release.set()


def test_gauges_show_in_multiprocess_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = seeded(tmp_path / "mp.db")
    run_live(get_settings(home=tmp_path), db, case.MODEL_FACTS, now=case.NOW)
    telemetry = Telemetry()
    telemetry.add_shared(MonitoringGauges(db, refresh_seconds=0.0))
    (tmp_path / "prometheus").mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prometheus"))
    got = samples(telemetry.exposition().body.decode())
    assert got[key("model_interval_coverage_current")] == pytest.approx(5 / 6)
    db.dispose()
