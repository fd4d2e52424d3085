"""The rules YAML: the shipped defaults are the reference specification's, and a bad file is a
ConfigError naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from prognos.alerting.rules import (
    DEFAULT_RULES,
    AssetRule,
    Rule,
    format_duration,
    load_rules,
    parse_duration,
)
from prognos.config import Settings
from prognos.errors import ConfigError

GOOD_RULE = """
rules:
  - name: f2
    signal: realised_f2
    comparison: "<"
    threshold: 0.7
    for: 1h30m
    severity: critical
"""


def test_the_defaults_are_the_reference_specification() -> None:
    rules = load_rules()
    got = {(r.signal, r.comparison, r.threshold, r.for_seconds, r.severity) for r in rules.rules}
    assert got == {
        ("realised_f2", "<", 0.75, 86_400.0, "critical"),
        ("seconds_since_last_request", ">", 300.0, 0.0, "critical"),
        ("prediction_psi", ">", 0.40, 0.0, "critical"),
        ("training_failures_in_a_row", ">=", 2.0, 0.0, "critical"),
        ("realised_f2", "<", 0.78, 0.0, "warning"),
        ("latency_p95_ms", ">", 100.0, 600.0, "warning"),
        ("prediction_psi", ">", 0.25, 0.0, "warning"),
        ("drift_share", ">", 0.30, 0.0, "warning"),
        ("ingestion_delay_seconds", ">", 3600.0, 0.0, "warning"),
    }
    assert {r.signal for r in rules.asset_rules} == {"should_inspect", "rul_lower"}
    assert all(r.description for r in (*rules.rules, *rules.asset_rules))


def test_settings_point_at_another_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD_RULE)
    rules = load_rules(Settings(home=tmp_path, alert_rules=path))
    assert [r.name for r in rules.rules] == ["f2"]
    assert rules.rules[0].for_seconds == 5400.0
    assert rules.asset_rules == []
    assert load_rules(Settings(home=tmp_path)).rules == load_rules(path=DEFAULT_RULES).rules


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (("threshold: 0.7", "threshold: high"), ["rules.0.threshold"]),
        (("signal: realised_f2", "signal: f3"), ["rules.0.signal", "realised_f2"]),
        (('comparison: "<"', 'comparison: "=="'), ["rules.0.comparison"]),
        (("for: 1h30m", "for: soon"), ["rules.0.for", "duration"]),
        (("for: 1h30m", "for: -5"), ["rules.0.for", "negative"]),
        (("severity: critical", "severity: page"), ["rules.0.severity"]),
        (("    severity: critical", "    severity: critical\n    colour: red"), ["colour"]),
        (("    threshold: 0.7\n", ""), ["rules.0.threshold", "Field required"]),
        (("name: f2", "name: F2 rule"), ["rules.0.name"]),
    ],
)
def test_a_bad_rule_names_its_field(
    tmp_path: Path, change: tuple[str, str], needles: list[str]
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD_RULE.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_rules(path=path)
    assert str(path) in str(info.value)
    for needle in needles:
        assert needle in str(info.value)


def test_asset_rules_need_a_lead_time_for_rul_and_names_are_unique(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("asset_rules:\n  - {name: rul, signal: rul_lower, severity: warning}\n")
    with pytest.raises(ConfigError, match="lead_time is required"):
        load_rules(path=path)
    path.write_text(
        GOOD_RULE + "asset_rules:\n  - {name: f2, signal: should_inspect, severity: warning}\n"
    )
    with pytest.raises(ConfigError, match="'f2' is used twice"):
        load_rules(path=path)


def test_invalid_yaml_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rules(path=path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(path=tmp_path / "missing.yaml")


def test_durations_both_ways() -> None:
    assert parse_duration("24h") == 86_400
    assert parse_duration("10m") == 600
    assert parse_duration("0s") == 0
    assert parse_duration("1d2h3m4s") == 93_784
    assert parse_duration(90) == 90
    for bad in ("", "10", "1x", "h", True, -1):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert [format_duration(s) for s in (0, 59, 600, 5400, 86_400, 93_784)] == [
        "0s",
        "59s",
        "10m",
        "1h30m",
        "1d",
        "1d2h3m4s",
    ]


def test_comparisons() -> None:
    rule = Rule.model_validate(
        {"name": "r", "signal": "drift_share", "comparison": ">", "threshold": 0.3,
         "severity": "warning"}
    )  # fmt: skip
    assert rule.holds(0.31) and not rule.holds(0.3)
    rule = rule.model_copy(update={"comparison": "<="})
    assert rule.holds(0.3) and not rule.holds(0.31)
    asset = AssetRule.model_validate(
        {"name": "a", "signal": "rul_lower", "lead_time": 10, "severity": "critical"}
    )
    assert (asset.comparison, asset.threshold) == ("<", 10.0)
