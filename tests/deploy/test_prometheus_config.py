"""The shipped Prometheus and Alertmanager configurations: valid for the programs that read them,
and wired to what the compose stack runs."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.deploy.conftest import DEPLOY
from tests.helpers.tools import run_tool

PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"


def test_promtool_checks_the_config_and_the_rule_files_it_names(promtool: str) -> None:
    done = run_tool(promtool, "check", "config", PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr
    # check config also checks every rule file: it must have found the generated rules.
    assert "alerts.yml" in done.stdout and "rules found" in done.stdout, done.stdout


def test_amtool_checks_the_alertmanager_config(amtool: str) -> None:
    done = run_tool(amtool, "check-config", ALERTMANAGER)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_config_scrapes_the_api_and_the_ingester_and_alerts_alertmanager() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # Every API replica, found by the compose service name, on the port prognos serve binds.
    assert jobs["prognos-api"]["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "30s"}
    ]
    assert jobs["prognos-stream"]["static_configs"][0]["targets"] == ["ingester:9310"]
    assert config["rule_files"] == ["alerts.yml"]
    assert (PROMETHEUS.parent / "alerts.yml").exists()
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]


def test_a_broken_config_is_refused(promtool: str, tmp_path: Path) -> None:
    """The check can fail: a config naming a missing rule file is refused."""
    folder = tmp_path
    config = yaml.safe_load(PROMETHEUS.read_text())
    config["rule_files"] = ["missing.yml"]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = run_tool(promtool, "check", "config", folder / "prometheus.yml")
    assert done.returncode != 0
