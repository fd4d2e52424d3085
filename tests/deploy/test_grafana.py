"""The Grafana dashboards: the four of the reference specification, provisioned, every PromQL
expression valid and naming only metrics prognos exports, every SQL query running against the
real schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from prognos.storage import Database, insert_records
from tests.deploy.conftest import DEPLOY
from tests.helpers.exported_metrics import monitoring_names, service_names
from tests.helpers.promql import dashboard_queries, metric_names, prepared, unknown_metrics
from tests.helpers.tools import run_tool
from tests.helpers.trained import Trained

GRAFANA = DEPLOY / "grafana"
BOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
QUERIES = [q for board in BOARDS for q in dashboard_queries(board)]


def test_the_four_dashboards_are_provisioned_with_their_data_sources() -> None:
    titles = {json.loads(b.read_text())["title"] for b in BOARDS}
    assert titles == {
        "prognos: model performance",
        "prognos: API health",
        "prognos: data & drift",
        "prognos: business KPIs",
    }
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}
    for board in BOARDS:
        document = json.loads(board.read_text())
        for panel in document["panels"]:
            used = [panel["datasource"]["uid"]] + [t["datasource"]["uid"] for t in panel["targets"]]
            assert set(used) <= uids, (board.name, panel["title"])
            assert panel["targets"], (board.name, panel["title"])
    # Each dashboard has several panels, and their ids are unique within it.
    for board in BOARDS:
        ids = [p["id"] for p in json.loads(board.read_text())["panels"]]
        assert len(ids) >= 5 and len(set(ids)) == len(ids), board.name


def test_the_parser_reads_metrics_not_labels_functions_or_clauses() -> None:
    expr = (
        'sum by (model_f2_score_current) (rate(prognos_api_requests_total{endpoint="up"}'
        '[$__rate_interval])) / on (instance) group_left topk(3, {__name__="up"})'
    )
    assert metric_names(expr) == {"prognos_api_requests_total", "up"}
    with pytest.raises(ValueError):
        metric_names("sum(rate(prognos_api_requests_total[5m])")  # unbalanced


def test_the_checker_catches_a_misspelt_metric(tmp_path: Path) -> None:
    exported = set().union(*(metric_names(q.text) for q in QUERIES if q.language == "promql"))
    assert unknown_metrics(QUERIES, exported) == {}
    board = GRAFANA / "dashboards" / "model-performance.json"
    misspelt = tmp_path / board.name
    misspelt.write_text(
        board.read_text().replace("model_f2_score_current", "model_f2_score_curent")
    )
    found = unknown_metrics(dashboard_queries(misspelt), exported)
    assert found and all(names == {"model_f2_score_curent"} for names in found.values())


@pytest.mark.slow
def test_every_panel_names_only_metrics_prognos_exports(trained: Trained, tmp_path: Path) -> None:
    exported = service_names() | monitoring_names(trained, tmp_path)
    assert unknown_metrics(QUERIES, exported) == {}
    # Not vacuous: the dashboards read the service, the ingester and the monitoring gauges.
    used = set().union(*(metric_names(q.text) for q in QUERIES if q.language == "promql"))
    for name in (
        "prognos_api_latency_seconds_bucket",
        "prognos_stream_readings_stored_total",
        "model_f2_score_current",
        "feature_drift_score",
        "data_ingestion_lag_seconds",
    ):
        assert name in used  # fmt: skip


def test_every_expression_is_valid_promql_for_promtool(promtool: str, tmp_path: Path) -> None:
    expressions = [q for q in QUERIES if q.language == "promql"]
    rules = [
        {"record": f"grafana:check_{i}", "expr": prepared(q.text)}
        for i, q in enumerate(expressions)
    ]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    done = run_tool(promtool, "check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
    # ... and it would refuse a broken one.
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "grafana:broken", "expr": "sum(rate(x[5m])"}]}]}))  # fmt: skip
    assert run_tool(promtool, "check", "rules", path).returncode != 0


NOW = datetime.now(UTC)


def _prediction(n: int, asset: str, minutes_ago: int, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": f"pred_{n}", "fleet": "plant", "asset_id": asset, "time": 100 - minutes_ago,
        "created_at": NOW - timedelta(minutes=minutes_ago), "model_name": "m",
        "model_version": "1", "failure_probability": 0.1, "risk_level": "LOW", "rul": 90.0,
        "rul_lower": 70.0, "rul_upper": 110.0, "should_inspect": False, "shadow": False,
    }  # fmt: skip
    row.update(fields)
    return row


@pytest.mark.services
def test_the_sql_panels_run_against_the_schema_and_read_the_latest_prediction(
    postgres_url: str,
) -> None:
    db = Database(postgres_url)
    db.upgrade()
    high = {"risk_level": "HIGH", "failure_probability": 0.9, "rul": 8.0, "rul_lower": 3.0,
            "should_inspect": True}  # fmt: skip
    insert_records(
        db,
        {
            "prediction": [
                _prediction(1, "A", 10, **high),  # A: high risk now
                _prediction(2, "B", 20, **high),  # B: was high, newer prediction is low
                _prediction(3, "B", 5),
                _prediction(4, "C", 5, shadow=True, **high),  # the shadow's: never shown
                _prediction(5, "C", 6, rul_lower=12.0),  # C: due within 30, no inspection yet
            ]
        },
    )
    sql = {q.panel: q.text for q in QUERIES if q.language == "sql"}
    assert set(sql) == {"High-risk equipment", "Maintenance schedule (soonest first)"}
    assert all("$" not in text for text in sql.values())  # no Grafana macros to fill in
    engine = sa.create_engine(db.engine.url)
    try:
        with engine.connect() as conn:
            risky = conn.execute(sa.text(sql["High-risk equipment"])).mappings().all()
            schedule = (
                conn.execute(sa.text(sql["Maintenance schedule (soonest first)"])).mappings().all()
            )
    finally:
        engine.dispose()
        db.dispose()
    assert [(r["asset_id"], r["failure_probability"]) for r in risky] == [("A", 0.9)]
    assert [(r["asset_id"], r["inspect_now"], r["due_within"]) for r in schedule] == [
        ("A", True, 3.0),
        ("C", False, 12.0),
    ]
