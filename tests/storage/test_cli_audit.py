"""``prognos audit list``: the audit log newest first, filtered, as a table or JSON lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from prognos.storage import Database, audit_events, insert_audit
from tests.helpers.cli import run

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose SQLite database holds five events, one a minute."""
    monkeypatch.delenv("PROGNOS_DATABASE_URL", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    db = Database(f"sqlite:///{home / 'prognos.db'}")
    db.upgrade()
    events = [
        ("retrain", "retrain.triggered", "FD001", {"reason": "drift"}),
        ("retrain", "retrain.succeeded", "FD001", {"version": 2}),
        ("gate", "gate.promoted", "FD001", {"challenger": 2}),
        ("cli", "api_key.create", "dashboard", {"scopes": ["read"]}),
        ("retrain", "retrain_x.other", "FD002", {"long": "x" * 500}),  # "_" is no wildcard
    ]
    insert_audit(
        db,
        [
            {"actor": a, "action": b, "subject": c, "details": d, "at": T0 + timedelta(minutes=i)}
            for i, (a, b, c, d) in enumerate(events)
        ],
    )
    db.dispose()
    return home


def _json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_audit_list_json_filters_and_limits(home: Path) -> None:
    result = run("audit", "list", "--json", "--home", home)
    assert result.exit_code == 0, result.output
    events = _json_lines(result.stdout)
    assert [e["action"] for e in events] == [
        "retrain_x.other",
        "api_key.create",
        "gate.promoted",
        "retrain.succeeded",
        "retrain.triggered",
    ]  # newest first
    assert events[-1]["at"] == T0.isoformat() and events[-1]["details"] == {"reason": "drift"}
    assert str(events[0]["event_id"]).startswith("evt_")

    retrain = run("audit", "list", "--json", "--action", "retrain.", "--home", home)
    assert [e["action"] for e in _json_lines(retrain.stdout)] == [
        "retrain.succeeded",
        "retrain.triggered",
    ]
    about = run("audit", "list", "--json", "--subject", "FD001", "--limit", "2", "--home", home)
    assert [e["action"] for e in _json_lines(about.stdout)] == [
        "gate.promoted",
        "retrain.succeeded",
    ]
    none = run("audit", "list", "--action", "nothing", "--home", home)
    assert none.exit_code == 0 and none.stdout == "" and "no audit events match" in none.stderr


def test_audit_list_table(home: Path) -> None:
    result = run("audit", "list", "--limit", "3", "--home", home)
    assert result.exit_code == 0, result.output
    assert "newest first (3)" in result.stdout
    assert "2026-05-01 12:04:00" in result.stdout and "api_key.create" in result.stdout
    assert "retrain.triggered" not in result.stdout  # beyond the limit
    assert "x" * 200 not in result.stdout and "…" in result.stdout  # long details cut


def test_audit_events_filters(home: Path) -> None:
    db = Database(f"sqlite:///{home / 'prognos.db'}")
    assert [e["action"] for e in audit_events(db, action="gate")] == ["gate.promoted"]
    assert [e["subject"] for e in audit_events(db, action="retrain_")] == ["FD002"]
    assert len(audit_events(db, subject="FD001", action="retrain.")) == 2
    with pytest.raises(ValueError, match="limit"):
        audit_events(db, 0)
    db.dispose()
