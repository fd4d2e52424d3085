"""Training snapshots: the content hash of the rows, and a run trained from the lake rebuilt
exactly from it (also after the lake grew), recorded in MLflow and the audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from prognos.config import get_settings
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.data.snapshot import SnapshotManifest, materialise, read_manifest, snapshot_hash
from prognos.data.sources import load_source
from prognos.errors import LakeError, SnapshotMismatchError
from prognos.storage import Database
from prognos.storage.lake import open_lake
from prognos.storage.lake_compact import compact_fleet, merged_name
from tests.helpers.cli import run
from tests.helpers.lake import export_in_steps


@pytest.fixture(scope="module")
def fleet() -> tuple[pd.DataFrame, object]:
    data = simulate_fleet(SimulatorConfig(n_assets=4, seed=2))
    return data.readings, data.spec


def test_the_hash_is_over_content_not_order(fleet: tuple) -> None:
    readings, spec = fleet
    digest = snapshot_hash(readings, spec)
    shuffled = readings.sample(frac=1.0, random_state=0)
    assert snapshot_hash(shuffled, spec) == digest
    assert len(digest) == 64
    # Ids as text or numbers, the time as int64: the same rows.
    assert snapshot_hash(readings.astype({"asset_id": str}), spec) == digest
    # Extra columns are not the spec's rows.
    assert snapshot_hash(readings.assign(other=1), spec) == digest


def test_any_changed_value_changes_the_hash(fleet: tuple) -> None:
    readings, spec = fleet
    digest = snapshot_hash(readings, spec)
    nudged = readings.copy()
    nudged.loc[7, "sensor_3"] = np.nextafter(nudged.loc[7, "sensor_3"], np.inf)
    dropped = readings.drop(index=3)
    doubled = pd.concat([readings, readings.iloc[[3]]])
    missing = readings.copy()
    missing.loc[2, "sensor_1"] = np.nan
    changed = [nudged, dropped, doubled, missing]
    hashes = {snapshot_hash(frame, spec) for frame in changed}
    assert digest not in hashes and len(hashes) == len(changed)


def test_a_snapshot_materialises_after_compaction(tmp_path: Path) -> None:
    """Compaction deletes the files a run's manifest lists; the rows come back all the same,
    also after the merged file itself is merged again."""
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.upgrade()
    lake = open_lake(str(tmp_path / "lake"))
    try:
        following = export_in_steps(db, lake, "rigs", 4)
        manifests = []
        for _ in range(2):
            data = load_source(f"lake:{lake.url}?fleet=rigs")
            manifests.append(SnapshotManifest.of(data, snapshot_hash(data.readings, data.spec)))
            following = export_in_steps(db, lake, "rigs", 2, start=following)  # the lake grows
            assert compact_fleet(lake, "rigs", min_files=2).files_after == 1
        assert lake.files("rigs") == [
            f"fleet=rigs/date=2026-03-01/{merged_name(1, following * 2 - 2)}"
        ]
        first, second = manifests
        assert len(first.files) == 4 and not any(lake.fs.exists(lake.path(f)) for f in first.files)
        for manifest in manifests:
            rebuilt = materialise(lake, manifest)
            assert snapshot_hash(rebuilt.readings, rebuilt.spec) == manifest.hash
        assert first.hash != second.hash and first.rows < second.rows
        # Rows missing from the merged file are found missing, never materialised as others.
        merged = lake.path(lake.files("rigs")[0])
        table = pq.read_table(merged)
        pq.write_table(table.filter(pc.field("reading_id") != 3), merged)
        with pytest.raises(SnapshotMismatchError, match="compacted with 6 rows; 5 of its"):
            materialise(lake, first)
    finally:
        db.dispose()


def _ingest_and_export(home: Path, lake: Path, source: str) -> None:
    env = {"PROGNOS_FLEET": "rigs", "PROGNOS_LAKE_URL": str(lake)}
    stored = run("ingest", source, "--home", home, env=env)
    assert stored.exit_code == 0, stored.output
    exported = run("lake", "export", "--fleet", "rigs", "--run-to-failure", "--home", home, env=env)
    assert exported.exit_code == 0, exported.output


@pytest.mark.slow
def test_a_run_from_the_lake_materialises_exactly(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from prognos.registry.tracking import connect
    from prognos.storage import audit_events, insert_readings
    from prognos.storage.database import open_database
    from prognos.training.config import TrainConfig
    from prognos.training.flow import train
    from prognos.training.snapshot import find_manifest
    from tests.helpers.configs import QUICK

    home, lake_dir = tmp_path / "home", tmp_path / "lake"
    _ingest_and_export(home, lake_dir, "sim:n_assets=12,seed=21")
    settings = get_settings(home=home, lake_url=str(lake_dir))
    data = load_source(f"lake:{lake_dir}?fleet=rigs")
    outcome = train(data, TrainConfig.model_validate(QUICK), settings, name="lakey")
    digest = outcome.snapshot
    assert digest == snapshot_hash(data.readings, data.spec)

    run_ = MlflowClient(settings.tracking_uri).get_run(outcome.run_id)
    assert run_.data.tags["prognos.snapshot"] == digest
    db = open_database(settings)
    try:
        event = audit_events(db, action="data.snapshot", subject="lakey")[0]
    finally:
        db.dispose()
    assert event["details"]["snapshot"] == digest
    assert event["details"]["manifest"] == f"runs:/{outcome.run_id}/snapshot.json"
    assert event["details"]["run_id"] == outcome.run_id
    artifact = Path(run_.info.artifact_uri.removeprefix("file://")) / "snapshot.json"
    assert json.loads(artifact.read_text())["files"] == data.meta["lake"]["files"]
    manifest = find_manifest(connect(settings), digest[:12])
    assert manifest == read_manifest(artifact.read_text())

    # The lake grows: a new asset's readings are stored and exported.
    newcomer = data.readings[data.readings["asset_id"] == "1"]
    channels = data.spec.columns[2:]
    rows = [
        {
            "fleet": "rigs",
            "asset_id": "late",
            "time": int(r["time"]),
            "values": {c: float(r[c]) for c in channels},
            "received_at": datetime.now(UTC),
        }
        for r in newcomer.to_dict("records")
    ]
    db = open_database(settings)
    try:
        insert_readings(db, rows)
    finally:
        db.dispose()
    exported = run("lake", "export", "--lake", lake_dir, "--home", home)
    assert exported.exit_code == 0 and f"{len(rows)} readings exported" in exported.stdout
    grown = load_source(f"lake:{lake_dir}?fleet=rigs")
    assert len(grown.readings) > len(data.readings)
    assert snapshot_hash(grown.readings, grown.spec) != digest

    lake = open_lake(str(lake_dir))
    rebuilt = materialise(lake, manifest)
    assert snapshot_hash(rebuilt.readings, rebuilt.spec) == digest
    pd.testing.assert_frame_equal(rebuilt.readings, data.readings)

    # The command writes a source `prognos train` reads, and checks the hash on the way.
    out = tmp_path / "snap" / "rows.parquet"
    made = run(
        "data", "snapshot", "materialise", digest[:10], "--output", f"parquet:{out}",
        "--home", home,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "hash verified" in made.stdout
    again = load_source(f"parquet:{out}")
    assert again.run_to_failure and snapshot_hash(again.readings, again.spec) == digest

    # A damaged lake is refused, never materialised as something else.
    first = lake.path(manifest.files[0])
    table = pd.read_parquet(first)
    table.loc[0, "sensor_2"] += 1.0
    table.to_parquet(first, index=False)
    with pytest.raises(SnapshotMismatchError, match="hash to"):
        materialise(lake, manifest)
    with pytest.raises(LakeError, match="no run with snapshot"):
        find_manifest(connect(settings), "0123456789abcdef")
