"""The Prometheus rules: generated from the YAML, committed as generated, valid, and doing what
they say under ``promtool test rules``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from prognos.alerting.prometheus import expression, render_prometheus_rules
from prognos.alerting.rules import Rule, load_rules
from prognos.errors import ConfigError
from tests.helpers.cli import run

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "deploy" / "prometheus" / "alerts.yml"
PROMTOOL_TEST = Path(__file__).resolve().parent / "promtool" / "alerts_test.yml"


def test_the_committed_file_is_what_the_generator_gives(tmp_path: Path) -> None:
    generated = render_prometheus_rules(load_rules())
    assert COMMITTED.read_text() == generated, (
        "regenerate: prognos alerts prometheus-rules --output deploy/prometheus/alerts.yml"
    )
    result = run("alerts", "prometheus-rules", "--home", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout == generated
    out = tmp_path / "out" / "alerts.yml"
    result = run("alerts", "prometheus-rules", "--home", tmp_path, "--output", out)
    assert result.exit_code == 0, result.output
    assert out.read_text() == generated


def test_every_rule_with_a_metric_is_exported_and_the_rest_are_named() -> None:
    rules = load_rules()
    document = yaml.safe_load(COMMITTED.read_text())
    exported = {r["alert"]: r for r in document["groups"][0]["rules"]}
    assert set(exported) == {r.name for r in rules.rules} - {"training_failed_twice"}
    for rule in rules.rules:
        if rule.name in exported:
            assert exported[rule.name]["labels"]["severity"] == rule.severity
    header = COMMITTED.read_text().split("groups:")[0]
    for name in ("training_failed_twice", "asset_inspect", "asset_rul_below_lead_time"):
        assert name in header
    assert exported["realised_f2_critical"]["for"] == "1d"
    assert exported["latency_p95_high"]["for"] == "10m"


def test_a_rule_without_a_prometheus_form_is_refused() -> None:
    rule = Rule.model_validate(
        {"name": "quiet", "signal": "seconds_since_last_request", "comparison": "<",
         "threshold": 10, "severity": "warning"}
    )  # fmt: skip
    with pytest.raises(ConfigError, match="quiet"):
        expression(rule)


def test_promtool_checks_and_unit_tests_the_rules(promtool: str) -> None:
    for args in (["check", "rules", str(COMMITTED)], ["test", "rules", str(PROMTOOL_TEST)]):
        done = subprocess.run(
            [promtool, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
