"""``prognos feedback import``: an event log recorded as feedback, once, refused by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from prognos.storage import Database, insert_readings
from prognos.storage.training import fleet_feedback
from tests.helpers.cli import assert_one_line_error, run
from tests.storage import reading


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROGNOS_DATABASE_URL", raising=False)
    monkeypatch.delenv("PROGNOS_FLEET", raising=False)


def events(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(text)
    return path


def test_an_event_log_is_recorded_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = events(
        tmp_path,
        "asset_id,time,event,notes\nP1,15,failure,seized\nP1,15,replacement,\nP2,40,inspection,ok\n",
    )
    first = run("feedback", "import", log, "--fleet", "pumps", "--home", home)
    assert first.exit_code == 0, first.output
    assert "3 new event(s) recorded, 0 already there" in first.stdout
    again = run("feedback", "import", log, "--fleet", "pumps", "--home", home)
    assert again.exit_code == 0, again.output
    assert "0 new event(s) recorded, 3 already there" in again.stdout
    db = Database(f"sqlite:///{home / 'prognos.db'}")
    stored = fleet_feedback(db, "pumps").sort_values(["asset_id", "event"])
    db.dispose()
    assert stored[["asset_id", "event", "failure_occurred"]].values.tolist() == [
        ["P1", "failure", True], ["P1", "replacement", False], ["P2", "inspection", False]
    ]  # fmt: skip
    assert stored["failure_cycle"].tolist() == [15, 15, 40]


def test_a_bad_event_log_stores_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = events(tmp_path, "asset_id,time,event\nP1,15,failure\nP1,16,overhaul\n")
    result = run("feedback", "import", log, "--fleet", "pumps", "--home", home)
    assert_one_line_error(result, "unknown event type(s) ['overhaul'] at line(s) 3")
    assert not (home / "prognos.db").exists()


def test_times_of_the_wrong_kind_for_the_fleet_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = Database(f"sqlite:///{home / 'prognos.db'}")
    db.upgrade()
    insert_readings(db, [reading("P1", 3, fleet="pumps")])
    log = events(tmp_path, "asset_id,time,event\nP1,2026-01-01T00:00:00Z,failure\n")
    result = run("feedback", "import", log, "--fleet", "pumps", "--home", home)
    assert_one_line_error(result, "its times are timestamps", "readings count cycles")
    assert fleet_feedback(db, "pumps").empty
    db.dispose()
    assert_one_line_error(run("feedback", "import", log, "--home", home), "--fleet")
