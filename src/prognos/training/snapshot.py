"""A training run's data snapshot, recorded: the content hash of the rows it read
(:func:`prognos.data.snapshot.snapshot_hash`) as the run's tag ``prognos.snapshot``, the
manifest (for data read from ``lake:``) as the run's ``snapshot.json``, and one
``data.snapshot`` event in the audit log. ``prognos data snapshot materialise HASH`` finds the
run by its tag and rebuilds the rows from the lake.

The hash is over the rows the source gave the run, before validation: those are what the lake
holds and can give back. Validation is deterministic, so the rows trained on follow from them
(the run's ``validation.json`` counts what was quarantined); ``prognos.data_hash`` remains the
hash of the validated rows and their spec that the promotion gate compares.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prognos.data.snapshot import SnapshotManifest, read_manifest, snapshot_hash
from prognos.errors import LakeError, StorageError
from prognos.fleet import ASSET
from prognos.storage import audit
from prognos.storage.database import open_database

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from prognos.config import Settings
    from prognos.data.dataset import FleetData

__all__ = [
    "SNAPSHOT_ARTIFACT",
    "SNAPSHOT_TAG",
    "Snapshot",
    "find_manifest",
    "prepare_snapshot",
    "record_snapshot",
]

SNAPSHOT_TAG = "prognos.snapshot"
SNAPSHOT_ARTIFACT = "snapshot.json"
ACTOR = "training"


class Snapshot:
    """A run's snapshot before the run: its hash, and the manifest when the data is the lake's."""

    def __init__(self, data: FleetData) -> None:
        self.hash = snapshot_hash(data.readings, data.spec)
        self.rows = len(data.readings)
        self.assets = int(data.readings[ASSET].nunique())
        self.source = data.source
        self.manifest = SnapshotManifest.of(data, self.hash)

    def tags(self) -> dict[str, str]:
        return {SNAPSHOT_TAG: self.hash}

    def details(self) -> dict[str, Any]:
        return {
            "snapshot": self.hash,
            "rows": self.rows,
            "assets": self.assets,
            "source": self.source,
            "lake": None if self.manifest is None else self.manifest.lake,
        }


def prepare_snapshot(data: FleetData) -> Snapshot:
    """Hash the rows the run is given (and describe where in the lake they are)."""
    return Snapshot(data)


def record_snapshot(
    snapshot: Snapshot,
    settings: Settings,
    client: MlflowClient,
    *,
    run_id: str,
    name: str,
    version: int | None,
) -> list[str]:
    """The manifest as the run's artifact and the audit event; warnings (an audit log that
    cannot be written does not undo a registered model, and says so)."""
    manifest = None
    if snapshot.manifest is not None:
        client.log_text(run_id, snapshot.manifest.to_json(), SNAPSHOT_ARTIFACT)
        manifest = f"runs:/{run_id}/{SNAPSHOT_ARTIFACT}"
    details = {**snapshot.details(), "run_id": run_id, "version": version, "manifest": manifest}
    try:
        db = open_database(settings)
        try:
            audit.record(db, ACTOR, "data.snapshot", name, details)
        finally:
            db.dispose()
    except StorageError as exc:
        return [f"snapshot {snapshot.hash[:12]} is not in the audit log: {exc}"]
    return []


def find_manifest(client: MlflowClient, digest: str) -> SnapshotManifest:
    """The manifest of the run tagged with snapshot ``digest`` (or a unique prefix of at least
    8 hex digits of it)."""
    from mlflow.exceptions import MlflowException

    digest = digest.strip().lower()
    if len(digest) < 8 or any(c not in "0123456789abcdef" for c in digest):
        raise LakeError(f"snapshot {digest!r}: give at least 8 hex digits of its hash")
    query = f"tags.`{SNAPSHOT_TAG}` LIKE '{digest}%'"
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, query, max_results=50)
    hashes = {r.data.tags[SNAPSHOT_TAG] for r in runs}
    if len(hashes) != 1:
        what = "no run" if not hashes else f"{len(hashes)} snapshots"
        raise LakeError(f"{what} with snapshot {digest}… in {client.tracking_uri}")
    for run in runs:
        try:
            local = client.download_artifacts(run.info.run_id, SNAPSHOT_ARTIFACT)
            text = Path(local).read_text()
        except (MlflowException, OSError):
            continue  # trained from another source: no manifest
        return read_manifest(text, f"runs:/{run.info.run_id}/{SNAPSHOT_ARTIFACT}")
    raise LakeError(
        f"snapshot {hashes.pop()} was not trained from lake: (source "
        f"{runs[0].data.tags.get('prognos.source')}): no manifest to rebuild it from"
    )
