"""The ``prognos-lake-export`` Prefect flow: its body exports the stored readings to the lake at
PROGNOS_LAKE_URL, audited as Prefect's; run again it exports nothing twice. Called through the
flow's ``.fn`` (the function Prefect runs, without a server); the deployment's schedule is tested
in test_orchestration.py and test_cli_flows.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from prognos.storage import Database, audit_events, insert_readings
from prognos.storage.lake import open_lake
from tests.helpers.lake import assert_lake_is_database, lake_rows


def test_the_lake_export_flow_exports_once(
    prefect_env: None, flows_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prognos.flows.orchestration import lake_export_flow

    lake_dir = tmp_path / "lake"
    monkeypatch.setenv("PROGNOS_LAKE_URL", str(lake_dir))
    db = Database(flows_db)
    try:
        insert_readings(db, lake_rows("pumps", 2, range(1, 6)) + lake_rows("fans", 1, range(1, 3)))
        assert lake_export_flow.name == "prognos-lake-export"
        first = lake_export_flow.fn(home=str(tmp_path / "home"))
        assert {r["fleet"]: r["rows"] for r in first} == {"fans": 2, "pumps": 10}
        lake = open_lake(str(lake_dir))
        assert_lake_is_database(lake, db, "pumps")
        assert_lake_is_database(lake, db, "fans")
        insert_readings(db, lake_rows("pumps", 2, range(6, 8)))
        again = lake_export_flow.fn(fleets=["pumps"], home=str(tmp_path / "home"))
        assert [(r["fleet"], r["rows"]) for r in again] == [("pumps", 4)]
        assert_lake_is_database(lake, db, "pumps")
        events = audit_events(db, action="lake.export")
    finally:
        db.dispose()
    assert sorted((e["subject"], e["details"]["rows"]) for e in events) == [
        ("fans", 2),
        ("pumps", 4),
        ("pumps", 10),
    ]
    assert {e["actor"] for e in events} == {"prefect"}
