"""Readings stored and exported to the Parquet lake in several batches, and what the lake's
files hold (without the readers' dedupe, so duplicates show): for the lake, compaction and
snapshot tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from prognos.storage import Database, insert_readings
from prognos.storage.lake import Lake
from prognos.storage.lake_export import export_fleet
from prognos.storage.training import fleet_readings


def lake_rows(
    fleet: str, assets: int, cycles: range, *, day: datetime | None = None
) -> list[dict[str, Any]]:
    """``assets`` x ``cycles`` readings, a channel missing every 7th cycle."""
    received = day or datetime(2026, 3, 1, 12, tzinfo=UTC)
    return [
        {
            "fleet": fleet,
            "asset_id": f"a{a}",
            "time": c,
            "values": {"load": float(c), "temp": 20.0 + a} if c % 7 else {"load": float(c)},
            "received_at": received,
        }
        for c in cycles
        for a in range(assets)
    ]


def export_in_steps(
    db: Database, lake: Lake, fleet: str, steps: int, *, assets: int = 2, start: int = 1,
    cycles: int = 3, day: datetime | None = None,
) -> int:  # fmt: skip
    """Store and export ``steps`` times (one file each); the next free cycle."""
    for _ in range(steps):
        insert_readings(db, lake_rows(fleet, assets, range(start, start + cycles), day=day))
        export_fleet(db, lake, fleet)
        start += cycles
    return start


def stored_rows(lake: Lake, fleet: str) -> pd.DataFrame:
    """Every row in the fleet's files, no dedupe, sorted by asset, time."""
    files = [lake.path(f) for f in lake.files(fleet)]
    table = pq.ParquetDataset(files, filesystem=lake.fs).read()
    frame = table.to_pandas().astype({"asset_id": object})
    return frame.sort_values(["asset_id", "time"]).reset_index(drop=True)


def database_rows(db: Database, fleet: str) -> pd.DataFrame:
    expected = fleet_readings(db, fleet).astype({"asset_id": object})
    return expected.sort_values(["asset_id", "time"]).reset_index(drop=True)


def assert_lake_is_database(lake: Lake, db: Database, fleet: str) -> None:
    """The lake's files hold each of the fleet's stored readings exactly once."""
    stored, expected = stored_rows(lake, fleet), database_rows(db, fleet)
    assert len(stored) == len(expected), (len(stored), len(expected))
    pd.testing.assert_frame_equal(stored[expected.columns], expected, check_like=True)
