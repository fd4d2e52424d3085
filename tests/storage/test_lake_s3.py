"""The lake on S3, against moto's S3 server on 127.0.0.1 (a real HTTP endpoint: s3fs and botocore
as with AWS), configured only by the standard AWS environment variables: export, ``lake:``,
compaction and a snapshot materialised after it. Without moto or s3fs it skips, and fails under
CI (both are in the dev extra)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.data.snapshot import SnapshotManifest, materialise, snapshot_hash
from prognos.data.sources import load_source
from prognos.storage import Database, insert_readings
from prognos.storage.lake import Lake, open_lake
from prognos.storage.lake_compact import compact_fleet
from prognos.storage.lake_export import export_lake
from tests.conftest import _missing_service
from tests.helpers.cli import run
from tests.helpers.lake import assert_lake_is_database
from tests.helpers.serving import free_port

SECRET = f"secret-{uuid.uuid4().hex}"


@pytest.fixture
def s3_lake(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``s3://<fresh bucket>/lake`` on a moto server of this test's own."""
    try:
        import s3fs
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        _missing_service(f"the S3 lake test needs moto[server] and s3fs: {exc}")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "prognos-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec reuses instances: none of another server
    bucket = f"prognos-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(bucket)
    try:
        yield f"s3://{bucket}/lake"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def _sim_rows(readings: pd.DataFrame, channels: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "fleet": "sim",
            "asset_id": str(r["asset_id"]),
            "time": int(r["time"]),
            "values": {c: float(r[c]) for c in channels},
            "received_at": datetime(2026, 4, 2, tzinfo=UTC),
        }
        for r in readings.to_dict("records")
    ]


def test_the_lake_on_s3(s3_lake: str, tmp_path: Path) -> None:
    data = simulate_fleet(SimulatorConfig(n_assets=3, seed=4))
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.upgrade()
    try:
        insert_readings(db, _sim_rows(data.readings, data.spec.columns[2:]))
        lake = open_lake(s3_lake)
        lake.write_spec("sim", data.spec.model_dump(mode="json"))
        lake.write_meta("sim", run_to_failure=True)
        exported = export_lake(db, lake, batch_rows=len(data.readings) // 4)[0]
        assert exported.rows == len(data.readings) and len(lake.files("sim")) >= 4
        assert export_lake(db, lake)[0].rows == 0  # the watermark on S3 holds
        assert_lake_is_database(lake, db, "sim")
        keys = lake.fs.find(lake.root)
        assert keys and not [k for k in keys if "/_tmp-" in k]  # written whole, never aside

        loaded = load_source(f"lake:{s3_lake}?fleet=sim")
        assert loaded.spec == data.spec and loaded.run_to_failure
        expected = data.readings.astype({"asset_id": str}).astype({"asset_id": object})
        pd.testing.assert_frame_equal(loaded.readings, expected)
        manifest = SnapshotManifest.of(loaded, snapshot_hash(loaded.readings, loaded.spec))
        assert manifest is not None

        result = compact_fleet(lake, "sim", min_files=2)
        assert result.files_after == 1 and len(lake.files("sim")) == 1
        assert_lake_is_database(lake, db, "sim")
        rebuilt = materialise(open_lake(s3_lake), manifest)
        assert snapshot_hash(rebuilt.readings, rebuilt.spec) == manifest.hash
        assert export_lake(db, lake)[0].rows == 0

        # Another client (a process of its own) exports: this one's cached listings see it.
        other = Lake(url=lake.url, fs=type(lake.fs)(skip_instance_cache=True), root=lake.root)
        late = data.readings[data.readings["asset_id"] == data.readings["asset_id"].iloc[0]]
        insert_readings(db, _sim_rows(late.assign(asset_id="late"), data.spec.columns[2:]))
        assert export_lake(db, other)[0].rows == len(late)
        assert len(lake.files("sim")) == 2
        assert lake.export_state("sim")["reading_id"] == len(data.readings) + len(late)
        assert_lake_is_database(lake, db, "sim")
    finally:
        db.dispose()

    # The CLI on the same lake, by the URL alone; no secret in what it prints.
    listed = run("lake", "ls", "--lake", s3_lake, "--home", tmp_path / "home")
    assert listed.exit_code == 0, listed.output
    assert "sim" in listed.stdout and SECRET not in listed.output
