"""``prognos flows list|serve``, and the plain CLI path staying free of Prefect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import assert_one_line_error, run


def test_flows_list_shows_schedules_without_a_server(tmp_path: Path) -> None:
    env = {"PROGNOS_MONITOR_SCHEDULE": "*/10 * * * *", "PROGNOS_MODEL_NAME": ""}
    listed = run("flows", "list", "--model", "FD001", "--json", "--home", tmp_path, env=env)
    assert listed.exit_code == 0, listed.output
    plans = {p["flow"]: p for p in map(json.loads, listed.stdout.splitlines())}
    flows = ("ingest", "train", "monitor", "retrain", "gate", "lake-export")
    assert set(plans) == {f"prognos-{f}" for f in flows}
    assert not plans["prognos-lake-export"]["registered"]  # no PROGNOS_LAKE_URL
    monitor = plans["prognos-monitor"]
    assert monitor["cron"] == "*/10 * * * *" and monitor["setting"] == "PROGNOS_MONITOR_SCHEDULE"
    assert monitor["registered"] and monitor["parameters"]["name"] == "FD001"
    assert plans["prognos-retrain"]["cron"] == "0 3 * * 0"  # the default
    assert plans["prognos-train"]["cron"] is None and plans["prognos-train"]["registered"]
    assert not plans["prognos-ingest"]["registered"]
    assert "PROGNOS_INGEST_SOURCE" in plans["prognos-ingest"]["missing"]

    table = run("flows", "list", "--home", tmp_path, env=env)
    assert table.exit_code == 0, table.output
    assert "prognos-train/train" in table.stdout and "on demand" in table.stdout
    assert "no model" in table.stdout  # monitor, retrain and gate need one


def test_flows_serve_without_prefect_api_url_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PROGNOS_PREFECT_API_URL", raising=False)
    result = run("flows", "serve", "--model", "tiny", "--home", tmp_path)
    assert_one_line_error(result, "PREFECT_API_URL is not set", "prefect server start")


def test_the_cli_does_not_import_prefect() -> None:
    """Prefect takes seconds to import: only `flows serve` may load it."""
    code = (
        "import sys, prognos.cli, prognos.flows.ingest, prognos.flows.jobs, "
        "prognos.flows.schedules; print('prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
