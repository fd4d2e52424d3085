"""Debian's Prometheus scraping a running ``prognos serve``: the prognos metrics arrive in
Prometheus and answer PromQL through its HTTP API (what Grafana and the alert rules rely on)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers.serving import body_for, free_port, readings, server_process
from tests.helpers.tools import background
from tests.helpers.trained import Trained


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.slow
def test_prometheus_scrapes_prognos_serve_and_answers_promql(
    trained: Trained, tmp_path: Path, prometheus: str
) -> None:
    env = {"PROGNOS_DATABASE_URL": f"sqlite:///{tmp_path}/service.db"}
    with server_process(trained, tmp_path, env) as server:
        target = server.url.removeprefix("http://")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "prognos-api", "static_configs": [{"targets": [target]}]}
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with background(args, tmp_path / "prometheus.log") as process:
            rows = readings(trained, 0, 5)
            for row in rows:
                response = httpx.post(f"{server.url}/predict", json=body_for(row), timeout=30)
                assert response.status_code == 200, response.text
            served = 'sum(prognos_api_requests_total{endpoint="/predict",status="200"})'
            deadline = time.monotonic() + 60
            result: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    result = _query(url, served)
                except httpx.HTTPError:
                    result = []  # not listening yet
                if result and float(result[0]["value"][1]) >= len(rows):
                    break
                time.sleep(0.5)
            assert result, (tmp_path / "prometheus.log").read_text()
            assert float(result[0]["value"][1]) == len(rows)
            # Labels as the service sets them, and the served model's info series.
            info = _query(url, "prognos_model_info == 1")
            assert [(s["metric"]["name"], s["metric"]["job"]) for s in info] == [
                (trained.name, "prognos-api")
            ]
            up = _query(url, 'up{job="prognos-api"}')
            assert [s["value"][1] for s in up] == ["1"]
