"""Compacting the lake: a partition's small files merged into one, every reading still there once,
the export's watermark untouched (an export after it duplicates nothing), a crash between the
merged file and the deletes losing nothing, and partitions it cannot merge exactly left alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prognos.data.sources import load_source
from prognos.errors import LakeError
from prognos.storage import Database, insert_readings
from prognos.storage.lake import Lake, open_lake
from prognos.storage.lake_compact import COMPACTED_FILE, compact_fleet, compact_lake
from prognos.storage.lake_export import export_fleet
from tests.helpers.cli import run
from tests.helpers.lake import (
    assert_lake_is_database,
    database_rows,
    export_in_steps,
    lake_rows,
    stored_rows,
)

DAY2 = datetime(2026, 3, 2, 8, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'lake.db'}")
    database.upgrade()
    yield database
    database.dispose()


def _names(lake: Lake, fleet: str) -> list[str]:
    return [f.split("/", 1)[1] for f in lake.files(fleet)]


def test_compaction_merges_small_files_and_the_export_goes_on(db: Database, tmp_path: Path) -> None:
    lake = open_lake(str(tmp_path / "lake"))
    following = export_in_steps(db, lake, "pumps", 6)  # 6 files on 2026-03-01
    export_in_steps(db, lake, "pumps", 2, start=following, day=DAY2)  # 2 on 2026-03-02
    watermark = lake.export_state("pumps")
    before = load_source(f"lake:{lake.url}?fleet=pumps").readings

    result = compact_fleet(lake, "pumps", min_files=3)
    assert (result.partitions, result.files_before, result.files_after) == (1, 6, 1)
    assert result.rows == 6 * 2 * 3 and result.skipped == []
    names = _names(lake, "pumps")
    first, last = 1, 36  # the reading ids of the first day
    assert names[0] == f"date=2026-03-01/part-{first:020d}-{last:020d}.parquet"
    assert [n.split("/")[0] for n in names] == ["date=2026-03-01"] + ["date=2026-03-02"] * 2
    assert_lake_is_database(lake, db, "pumps")  # every reading once, nothing else
    pd.testing.assert_frame_equal(load_source(f"lake:{lake.url}?fleet=pumps").readings, before)
    merged = pq.read_table(lake.path(lake.files("pumps")[0]))
    assert merged.column_names == ["asset_id", "time", "load", "temp", "received_at", "reading_id"]
    assert lake.export_state("pumps") == watermark

    # The export goes on after its watermark: nothing twice.
    insert_readings(db, lake_rows("pumps", 2, range(100, 103)))
    assert export_fleet(db, lake, "pumps").rows == 6
    assert_lake_is_database(lake, db, "pumps")
    again = compact_lake(lake, min_files=2)[0]  # the merged file and the new one; day 2 too
    assert (again.partitions, again.files_before, again.files_after) == (2, 4, 2)
    assert_lake_is_database(lake, db, "pumps")
    assert compact_fleet(lake, "pumps", min_files=2).partitions == 0  # nothing left to merge


def test_files_the_export_may_still_rewrite_are_left_alone(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = open_lake(str(tmp_path / "lake"))
    export_in_steps(db, lake, "pumps", 3)
    insert_readings(db, lake_rows("pumps", 2, range(50, 53)))

    def crash(self: Lake, fleet: str, state: dict) -> None:
        raise LakeError("killed between the files and the watermark")

    with monkeypatch.context() as patched:
        patched.setattr(Lake, "write_export_state", crash)
        with pytest.raises(LakeError, match="killed"):
            export_fleet(db, lake, "pumps")
    assert len(lake.files("pumps")) == 4
    result = compact_fleet(lake, "pumps", min_files=2)
    assert (result.files_before, result.files_after) == (4, 2)  # the batch above it stays
    # The retried batch replaces its own file; still every reading once.
    assert export_fleet(db, lake, "pumps").rows == 6
    assert_lake_is_database(lake, db, "pumps")


def test_a_crash_before_the_deletes_leaves_copies_readers_collapse(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = open_lake(str(tmp_path / "lake"))
    export_in_steps(db, lake, "pumps", 4)

    def crash(self: Lake, relatives: object) -> None:
        raise LakeError("killed before the deletes")

    with monkeypatch.context() as patched:
        patched.setattr(Lake, "remove", crash)
        with pytest.raises(LakeError, match="killed"):
            compact_fleet(lake, "pumps", min_files=2)
    assert len(lake.files("pumps")) == 5  # the merged file beside the four it merged
    assert len(stored_rows(lake, "pumps")) == 2 * len(database_rows(db, "pumps"))
    loaded = load_source(f"lake:{lake.url}?fleet=pumps").readings
    assert len(loaded) == len(database_rows(db, "pumps"))  # readers keep one of each
    result = compact_fleet(lake, "pumps", min_files=2)  # the next run finishes the job
    assert (result.files_before, result.files_after) == (5, 1)
    assert_lake_is_database(lake, db, "pumps")


def test_partitions_it_cannot_merge_exactly_are_named_and_left(tmp_path: Path) -> None:
    """Two files whose reading ids interleave (not an export's: a lake stitched by hand) could
    not be told apart again from the merged file, so they stay as they are."""
    lake = open_lake(str(tmp_path / "lake"))
    lake.write_export_state("rig", {"reading_id": 100, "rows": 4})
    for first, ids in ((1, [1, 5]), (2, [2, 6])):
        table = pa.table(
            {
                "asset_id": ["a", "b"],
                "time": pa.array(ids, pa.int64()),
                "load": [1.0, 2.0],
                "reading_id": pa.array(ids, pa.int64()),
            }
        )
        lake.write_table(f"fleet=rig/date=2026-01-01/part-{first:020d}.parquet", table)
    result = compact_fleet(lake, "rig", min_files=2)
    assert result.partitions == 0 and len(lake.files("rig")) == 2
    assert result.skipped == ["date=2026-01-01: part-00000000000000000001.parquet's reading ids "
                              "interleave with another file's (not an export's lake)"]  # fmt: skip
    assert not (tmp_path / "lake" / "fleet=rig" / "date=2026-01-01" / COMPACTED_FILE).exists()


def test_the_compact_command(db: Database, tmp_path: Path) -> None:
    lake_dir, home = tmp_path / "lake", tmp_path / "home"
    export_in_steps(db, open_lake(str(lake_dir)), "pumps", 3)
    env = {"PROGNOS_DATABASE_URL": f"sqlite:///{tmp_path / 'lake.db'}"}
    out = run("lake", "compact", "--min-files", "2", "--lake", lake_dir, "--home", home, env=env)
    assert out.exit_code == 0, out.output
    assert "fleet pumps: 1 partitions compacted, 3 -> 1 files" in out.stdout
    again = run("lake", "compact", "--json", "--lake", lake_dir, "--home", home, env=env)
    assert again.exit_code == 0 and '"partitions": 0' in again.stdout
    from prognos.storage import audit_events

    event = audit_events(db, action="lake.compact")[0]
    assert event["subject"] == "pumps" and event["details"]["files_after"] == 1
