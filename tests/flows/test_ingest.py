"""Batch ingest: validated, quarantined with reasons, stored as the service stores a reading, and
idempotent; through the library and through ``prognos ingest``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from prognos.config import get_settings
from prognos.flows.ingest import ingest
from prognos.storage import Database, audit_events, readings_for_asset
from tests.helpers.cli import run


def _count(url: str, fleet: str) -> int:
    from sqlalchemy import text

    db = Database(url)
    with db.engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM readings WHERE fleet = :f"), {"f": fleet})
        value = int(n.scalar_one())
    db.dispose()
    return value


def test_ingest_stores_valid_rows_once_and_quarantines_the_rest(
    tmp_path: Path, flows_db: str, broken_csv: Path
) -> None:
    settings = get_settings(home=tmp_path / "home")
    source = f"csv:{broken_csv}"
    total = len(pd.read_csv(broken_csv))
    bad_ids = int((pd.read_csv(broken_csv, dtype={"asset_id": str})["asset_id"] == "bad id").sum())

    first = ingest(settings, source)
    assert first.fleet == "simulated"  # the spec's name (PROGNOS_FLEET unset)
    assert first.total_rows == total
    assert first.by_rule == {
        "type": 1,
        "out_of_range": 1,
        "duplicate": 1,
        "invalid_id": bad_ids,
    }
    assert first.quarantined == 3 + bad_ids
    assert first.stored == total - first.quarantined and first.already_stored == 0
    assert _count(flows_db, "simulated") == first.stored

    quarantine = pd.read_csv(first.quarantine_path, dtype={"asset_id": str})  # type: ignore[arg-type]
    assert first.quarantine_path == settings.quarantine_dir / "rig.csv"
    assert len(quarantine) == first.quarantined
    assert quarantine["row"].is_monotonic_increasing  # in input order
    assert set(quarantine.loc[quarantine["asset_id"] == "bad id", "reason"]) == {
        "invalid_id:asset_id"
    }

    again = ingest(settings, source)  # idempotent: nothing is stored twice
    assert (again.stored, again.already_stored) == (0, first.stored)
    assert again.quarantined == first.quarantined
    assert _count(flows_db, "simulated") == first.stored

    db = Database(flows_db)
    stored = readings_for_asset(db, "1", limit=1000)
    events = audit_events(db, action="data.ingest")
    db.dispose()
    # Stored as the service stores a reading: the spec's channels, keyed by the asset as text.
    raw = pd.read_csv(broken_csv, dtype={"asset_id": str})
    expected = raw[raw["asset_id"] == "1"].drop(index=[3, 5]).drop_duplicates("time")
    assert [r["time"] for r in stored] == expected["time"].tolist()
    assert stored[0]["values"] == pytest.approx(
        expected.iloc[0].drop(["asset_id", "time"]).astype(float).to_dict()
    )
    assert [e["details"]["stored"] for e in events] == [0, first.stored]  # newest first
    assert events[0]["subject"] == "simulated" and events[0]["actor"] == "cli"


def test_ingest_stores_timestamps_as_the_service_does(tmp_path: Path, flows_db: str) -> None:
    """Timestamps (any offset) become UTC nanoseconds; a fleet name comes from PROGNOS_FLEET."""
    (tmp_path / "pumps.spec.yaml").write_text(
        "name: pumps\nasset_column: pump_id\ntime_column: ts\ntime_kind: timestamp\n"
        "sensors:\n  - {name: vibration, source: VIB, min: 0, max: 100}\n"
        "labels: {shape: event_log, horizon: 30}\n"
    )
    (tmp_path / "pumps.csv").write_text(
        "pump_id,ts,VIB\n"
        "p-1,2026-01-01T00:00:00Z,1.5\n"
        "p-1,2026-01-01T02:00:00+01:00,2.5\n"
        "p-2,1960-01-01T00:00:00Z,3.0\n"  # before what storage holds
    )
    settings = get_settings(home=tmp_path / "home", fleet="plant-a")
    outcome = ingest(settings, f"csv:{tmp_path / 'pumps.csv'}")
    assert (outcome.fleet, outcome.stored, outcome.quarantined) == ("plant-a", 2, 1)
    assert outcome.by_rule == {"unstorable_time": 1}
    db = Database(flows_db)
    stored = readings_for_asset(db, "p-1")
    db.dispose()
    first = pd.Timestamp("2026-01-01T00:00:00Z")
    assert [r["time"] for r in stored] == [first.value, (first + pd.Timedelta("1h")).value]
    assert [r["fleet"] for r in stored] == ["plant-a", "plant-a"]
    assert stored[1]["values"] == {"vibration": 2.5}


def test_cli_ingest(tmp_path: Path, flows_db: str, broken_csv: Path) -> None:
    home = tmp_path / "home"
    result = run("ingest", f"csv:{broken_csv}", "--home", home)
    assert result.exit_code == 0, result.output
    assert "stored" in result.stdout and "quarantine ->" in result.stdout
    again = run("ingest", f"csv:{broken_csv}", "--json", "--home", home)
    assert again.exit_code == 0, again.output
    counts = json.loads(again.stdout)
    assert counts["stored"] == 0 and counts["already_stored"] == counts["valid_rows"] > 0
    assert counts["quarantine_path"] == str(home / "quarantine" / "rig.csv")


def test_cli_ingest_without_valid_rows_exits_1(tmp_path: Path, flows_db: str) -> None:
    (tmp_path / "bad.spec.yaml").write_text("name: bad\nsensors:\n  - {name: sensor_1}\n")
    (tmp_path / "bad.csv").write_text("asset_id,time,sensor_1\nx,1,abc\nx,2,def\n")
    result = run("ingest", f"csv:{tmp_path / 'bad.csv'}", "--home", tmp_path / "home")
    assert result.exit_code == 1, result.output
    assert "2 quarantined" in result.stdout and "no valid rows remain" in result.stderr
