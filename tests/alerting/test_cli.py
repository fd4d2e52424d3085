"""``prognos alerts check`` and ``list`` over a home's database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prognos.config import Settings
from prognos.storage import Database, database_url
from prognos.storage.models import Prediction
from tests.alerting.conftest import Receiver
from tests.helpers.cli import assert_one_line_error, run


def _seed_silent_service(home: Path) -> None:
    """One prediction 10 minutes ago: no successful request for 5 minutes fires."""
    db = Database(database_url(Settings(home=home)))
    db.upgrade()
    row = {
        "id": "pred_1",
        "fleet": "rig",
        "asset_id": "A",
        "time": 1,
        "created_at": datetime.now(UTC) - timedelta(minutes=10),
        "model_name": "m",
        "model_version": "1",
        "failure_probability": 0.1,
        "risk_level": "LOW",
        "rul": 80.0,
        "rul_lower": 60.0,
        "rul_upper": 100.0,
        "should_inspect": False,
        "latency_ms": 5.0,
    }
    with db.begin("seeding") as conn:
        conn.execute(Prediction.__table__.insert(), [row])
    db.dispose()


def test_check_notifies_and_list_shows_it(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    _seed_silent_service(home)
    env = {"PROGNOS_ALERT_WEBHOOK_URL": receiver.url("/json")}
    result = run("alerts", "check", "--json", "--home", home, env=env)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    firing = [r for r in document["results"] if r["state"] == "firing"]
    assert [r["rule"] for r in firing] == ["no_successful_request"]
    assert document["delivered_all"] is True
    assert document["delivery"]["JSON webhook"]["delivered"] == 1
    [(path, body)] = receiver.received
    assert (path, body["rule"], body["state"]) == ("/json", "no_successful_request", "firing")

    # A second check: still firing, not sent again (repeat interval 4 h).
    result = run("alerts", "check", "--home", home, env=env)
    assert result.exit_code == 0, result.output
    assert "no_successful_request" in result.stdout and "firing" in result.stdout
    assert "1 firing, 0 notification(s)" in result.stdout
    assert len(receiver.received) == 1

    result = run("alerts", "list", "--json", "--home", home)
    assert result.exit_code == 0, result.output
    [alert] = json.loads(result.stdout)
    assert (alert["rule"], alert["state"], alert["severity"]) == (
        "no_successful_request",
        "firing",
        "critical",
    )
    result = run("alerts", "list", "--all", "--home", home)
    assert result.exit_code == 0, result.output
    assert "no_successful_request" in result.stdout


def test_bad_rules_are_one_line_naming_the_field(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - {name: x, signal: nope, comparison: '<', threshold: 1, severity: warning}\n"
    )
    result = run("alerts", "check", "--rules", rules, "--home", tmp_path / "home")
    assert_one_line_error(result, "rules.0.signal", str(rules))
    result = run("alerts", "list", "--home", tmp_path / "home")
    assert result.exit_code == 0 and "no pending or firing alerts" in result.stdout
