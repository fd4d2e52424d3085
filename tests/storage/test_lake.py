"""The Parquet lake: exporting the database's readings idempotently (crash included), the layout
other engines read (pyarrow, DuckDB, Spark), ``lake:`` as a data source, fsspec filesystems."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.data.sources import load_source
from prognos.errors import LakeError
from prognos.storage import Database, insert_readings
from prognos.storage.lake import Lake, open_lake
from prognos.storage.lake_export import export_fleet, export_lake
from prognos.storage.training import fleet_readings
from tests.helpers.lake import lake_rows


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'lake.db'}")
    database.upgrade()
    yield database
    database.dispose()


def _stored(lake: Lake, fleet: str) -> pd.DataFrame:
    """Every row in the fleet's files, no dedupe: duplicates would show."""
    table = pq.ParquetDataset([lake.path(f) for f in lake.files(fleet)], filesystem=lake.fs).read()
    return table.to_pandas().sort_values(["asset_id", "time"]).reset_index(drop=True)


def _same_as_database(lake: Lake, db: Database, fleet: str) -> None:
    stored = _stored(lake, fleet)
    expected = fleet_readings(db, fleet).sort_values(["asset_id", "time"]).reset_index(drop=True)
    expected = expected.astype({"asset_id": object})
    assert len(stored) == len(expected)
    pd.testing.assert_frame_equal(
        stored[expected.columns].astype({"asset_id": object}), expected, check_like=True
    )


def test_export_appends_each_reading_once(db: Database, tmp_path: Path) -> None:
    insert_readings(db, lake_rows("pumps", 3, range(1, 21)) + lake_rows("fans", 2, range(1, 6)))
    lake = open_lake(str(tmp_path / "lake"))
    first = {r.fleet: r for r in export_lake(db, lake, batch_rows=25)}
    assert first["pumps"].rows == 60 and first["pumps"].batches == 3
    assert first["fans"].rows == 10
    assert [r.rows for r in export_lake(db, lake)] == [0, 0]  # nothing new, nothing written
    insert_readings(db, lake_rows("pumps", 3, range(21, 26)))
    again = export_fleet(db, lake, "pumps")
    assert again.rows == 15 and again.files == [
        f"fleet=pumps/date=2026-03-01/part-{again.watermark - 14:020d}.parquet"
    ]
    _same_as_database(lake, db, "pumps")
    _same_as_database(lake, db, "fans")
    assert lake.fleets() == ["fans", "pumps"]
    assert lake.export_state("pumps")["rows"] == 75


def test_a_crash_before_the_watermark_moves_duplicates_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_readings(db, lake_rows("pumps", 2, range(1, 11)))
    lake = open_lake(str(tmp_path / "lake"))

    def crash(self: Lake, fleet: str, state: dict) -> None:
        raise LakeError("killed between the files and the watermark")

    with monkeypatch.context() as patched:
        patched.setattr(Lake, "write_export_state", crash)
        with pytest.raises(LakeError, match="killed"):
            export_fleet(db, lake, "pumps", batch_rows=100)
    assert lake.files("pumps") and lake.export_state("pumps")["reading_id"] == 0
    # More readings arrive before the retry: the batch grows, its file is replaced, not doubled.
    insert_readings(db, lake_rows("pumps", 2, range(11, 14)))
    retried = export_fleet(db, lake, "pumps", batch_rows=100)
    assert retried.rows == 26
    assert len(lake.files("pumps")) == 1
    _same_as_database(lake, db, "pumps")


def test_dates_and_partition_filters(db: Database, tmp_path: Path) -> None:
    day_ns = 86_400 * 10**9
    start = int(pd.Timestamp("2026-05-01", tz="UTC").value)
    stamped = [
        {
            "fleet": "rig",
            "asset_id": "r1",
            "time": start + d * day_ns + h * 3_600 * 10**9,
            "values": {"load": float(d)},
            "received_at": datetime(2026, 6, 1, tzinfo=UTC),
        }
        for d in range(3)
        for h in range(4)
    ]
    insert_readings(db, stamped)
    late = datetime(2026, 2, 3, 23, tzinfo=UTC)
    insert_readings(db, lake_rows("cycles", 1, range(1, 5), day=late))
    lake = open_lake(str(tmp_path / "lake"))
    export_lake(db, lake)
    # Timestamped readings go to the day of their time, cycles to the day they were stored.
    assert [f.split("/")[1] for f in lake.files("rig")] == [
        "date=2026-05-01",
        "date=2026-05-02",
        "date=2026-05-03",
    ]
    assert lake.files("cycles")[0].startswith("fleet=cycles/date=2026-02-03/")
    assert lake.files("rig", date(2026, 5, 2), date(2026, 5, 2)) == [lake.files("rig")[1]]

    middle = load_source(f"lake:{tmp_path / 'lake'}?fleet=rig&start=2026-05-02&end=2026-05-03")
    assert len(middle.readings) == 8 and middle.spec.time_kind == "timestamp"
    assert str(middle.readings["time"].dt.tz) == "UTC"
    assert middle.readings["time"].min() == pd.Timestamp("2026-05-02", tz="UTC")
    assert middle.meta["lake"]["files"] == lake.files("rig")[1:]
    scan = lake.dataset().to_table(
        filter=(pc.field("fleet") == "rig") & (pc.field("date") >= date(2026, 5, 2))
    )
    assert scan.num_rows == 8 and set(scan.column("fleet").to_pylist()) == {"rig"}


def test_lake_source_reads_a_fleet_with_its_spec_and_shape(db: Database, tmp_path: Path) -> None:
    data = simulate_fleet(SimulatorConfig(n_assets=3, seed=5))
    rows = [
        {
            "fleet": "sim",
            "asset_id": str(r["asset_id"]),
            "time": int(r["time"]),
            "values": {c: float(r[c]) for c in data.spec.columns[2:]},
            "received_at": datetime(2026, 1, 5, tzinfo=UTC),
        }
        for r in data.readings.to_dict("records")
    ]
    insert_readings(db, rows)
    lake = open_lake(str(tmp_path / "lake"))
    lake.write_spec("sim", data.spec.model_dump(mode="json"))
    lake.write_meta("sim", run_to_failure=True)
    export_lake(db, lake)
    loaded = load_source(f"lake:{tmp_path / 'lake'}")  # the only fleet: no ?fleet= needed
    assert loaded.spec == data.spec and loaded.run_to_failure
    # The spec's column order, whatever order the files have.
    assert list(loaded.readings.columns) == data.spec.columns
    expected = data.readings.astype({"asset_id": str}).astype({"asset_id": object})
    pd.testing.assert_frame_equal(loaded.readings, expected)


def test_lake_source_errors_name_the_problem(db: Database, tmp_path: Path) -> None:
    insert_readings(db, lake_rows("a", 1, range(1, 3)) + lake_rows("b", 1, range(1, 3)))
    export_lake(db, open_lake(str(tmp_path / "lake")))
    root = tmp_path / "lake"
    with pytest.raises(LakeError, match="holds 2 fleets"):
        load_source(f"lake:{root}")
    with pytest.raises(LakeError, match="unknown parameter 'fleets'"):
        load_source(f"lake:{root}?fleets=a")
    with pytest.raises(LakeError, match="YYYY-MM-DD"):
        load_source(f"lake:{root}?fleet=a&start=yesterday")
    with pytest.raises(LakeError, match="no files of fleet 'a' between 2030-01-01"):
        load_source(f"lake:{root}?fleet=a&start=2030-01-01")
    with pytest.raises(LakeError, match="cannot name a lake partition"):
        export_fleet(db, open_lake(str(root)), "../x")


def test_an_fsspec_memory_lake(db: Database) -> None:
    url = f"memory://lake-{uuid.uuid4().hex[:8]}"
    insert_readings(db, lake_rows("pumps", 2, range(1, 9)))
    lake = open_lake(url)
    assert export_lake(db, lake, batch_rows=5)[0].rows == 16
    assert export_lake(db, lake)[0].rows == 0
    loaded = load_source(f"lake:{url}?fleet=pumps")
    assert len(loaded.readings) == 16
    _same_as_database(lake, db, "pumps")
    lake.fs.rm(lake.root, recursive=True)


def test_duckdb_reads_the_lake(db: Database, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    insert_readings(db, lake_rows("pumps", 2, range(1, 11)) + lake_rows("fans", 1, range(1, 4)))
    export_lake(db, open_lake(str(tmp_path / "lake")), batch_rows=7)
    found = duckdb.sql(
        f"SELECT fleet, date, count(*), count(DISTINCT asset_id), max(temp) "
        f"FROM read_parquet('{tmp_path}/lake/*/*/*.parquet', hive_partitioning = true, "
        "union_by_name = true) GROUP BY ALL ORDER BY fleet"
    ).fetchall()
    assert found == [
        ("fans", date(2026, 3, 1), 3, 1, 20.0),
        ("pumps", date(2026, 3, 1), 20, 2, 21.0),
    ]


@pytest.mark.slow
def test_spark_reads_the_lake(db: Database, tmp_path: Path) -> None:
    pyspark = pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime")
    insert_readings(db, lake_rows("pumps", 2, range(1, 11)))
    export_lake(db, open_lake(str(tmp_path / "lake")), batch_rows=7)
    spark = (
        pyspark.sql.SparkSession.builder.master("local[1]")
        .appName("prognos-lake-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    try:
        frame = spark.read.option("mergeSchema", "true").parquet(str(tmp_path / "lake"))
        rows = frame.groupBy("fleet", "date").count().collect()
        types = dict(frame.dtypes)
    finally:
        spark.stop()
    assert [(r["fleet"], r["date"], r["count"]) for r in rows] == [("pumps", date(2026, 3, 1), 20)]
    assert types["time"] == "bigint" and types["temp"] == "double" and types["date"] == "date"


@pytest.mark.services
def test_postgres_export_waits_for_open_writers(postgres_url: str, tmp_path: Path) -> None:
    """An id taken by a transaction still open must not be passed by the watermark."""
    from sqlalchemy import text

    db = Database(postgres_url)
    db.upgrade()
    try:
        insert_readings(db, lake_rows("pumps", 1, range(1, 3)))
        lake = open_lake(str(tmp_path / "lake"))
        with db.engine.connect() as slow:
            tx = slow.begin()
            slow.execute(
                text(
                    'INSERT INTO readings (fleet, asset_id, time, "values", received_at) '
                    "VALUES ('pumps', 'late', 1, '{\"load\": 1.0}', now())"
                )
            )
            insert_readings(db, lake_rows("pumps", 1, range(3, 5)))  # a larger id, committed
            threading.Timer(0.5, tx.commit).start()
            started = time.perf_counter()
            result = export_fleet(db, lake, "pumps")
            waited = time.perf_counter() - started
        assert waited >= 0.4  # it waited for the open transaction
        assert result.rows == 5 and "late" in set(_stored(lake, "pumps")["asset_id"])
    finally:
        db.dispose()
