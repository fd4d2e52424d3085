"""One database, several fleets: readings are unique per (fleet, asset, time), and a model's online
state is rebuilt from its own fleet's readings only, even where two fleets share asset ids."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prognos.ingestion.core import IngestionCore
from prognos.storage import repository
from prognos.storage.database import Database
from prognos.storage.history import readings_tail
from tests.helpers.serving import open_settings, readings
from tests.helpers.trained import Trained


def _row(fleet: str, asset: str, time: int, value: float) -> dict[str, Any]:
    return {"fleet": fleet, "asset_id": asset, "time": time, "values": {"sensor_1": value}}


def test_readings_are_unique_per_fleet_asset_and_time(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.upgrade()
    rows = [_row("a", "engine_1", 1, 1.0), _row("b", "engine_1", 1, 2.0)]
    assert repository.insert_readings(db, rows) == 2
    assert repository.insert_readings(db, [_row("a", "engine_1", 1, 9.0)]) == 0  # idempotent
    frame, counts = readings_tail(db, 10, "b")
    assert counts == {"engine_1": 1}
    assert frame["sensor_1"].tolist() == [2.0]
    db.dispose()


def _channels(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k.startswith(("sensor", "setting"))}


def test_a_core_seeds_its_state_from_its_own_fleet_only(trained: Trained, tmp_path: Path) -> None:
    rows = readings(trained, 0, 20)
    asset = str(rows[0]["asset_id"])
    settings = open_settings(trained, tmp_path / "db.sqlite", compute_process=False)
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.upgrade()

    def stored(fleet: str, part: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"fleet": fleet, "asset_id": asset, "time": int(r["time"]),
             "values": _channels(r)}
            for r in part
        ]  # fmt: skip

    repository.insert_readings(db, stored("plant-a", rows[:12]) + stored("plant-b", rows[:5]))
    db.dispose()

    async def seen(fleet: str) -> int:
        core = IngestionCore(settings.model_copy(update={"fleet": fleet}))
        await core.start()
        try:
            [outcome] = await core.submit("state", [asset])
            assert outcome.state is not None
            reading = {"asset_id": asset, "time": int(rows[12]["time"]), **_channels(rows[12])}
            ingested = await core.ingest([reading])
            assert ingested[0].error is None
            return outcome.state.readings_seen
        finally:
            await core.stop()

    assert asyncio.run(seen("plant-a")) == 12
    assert asyncio.run(seen("plant-b")) == 5
    # Each core stored its reading under its own fleet.
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert readings_tail(db, 100, "plant-a")[1] == {asset: 13}
    assert readings_tail(db, 100, "plant-b")[1] == {asset: 6}
    db.dispose()
