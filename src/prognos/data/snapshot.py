"""Training snapshots: a content hash over the exact rows a run read, and a manifest that rebuilds
those rows from the Parquet lake.

The hash (:func:`snapshot_hash`) is SHA-256 over a canonical serialisation written out here,
not ``pandas.util.hash_pandas_object`` (whose values pandas does not promise to keep across
versions, and whose 64 bits per row would be summed or concatenated in some order anyway):

- columns: the spec's (``asset_id``, ``time``, settings, sensors), in that order, their names
  and kinds in a JSON header with the row count;
- rows: canonically ordered, by ``asset_id``, then ``time``, then every channel (so the hash does
  not depend on the order the rows came in, duplicates included);
- values: ``asset_id`` as text (``1`` and ``"1"`` alike, as the database stores ids),
  ``time`` as int64 (timestamps as UTC nanoseconds, so a lake's int64 and a loader's
  datetimes hash alike), numeric channels as little-endian float64 (every NaN one bit pattern;
  an integer channel hashes as the floats training sees), text and mixed columns as the UTF-8 of
  ``type:repr`` of each value with its length.

A run trained from ``lake:`` also gets a manifest, the run's ``snapshot.json`` artifact: the
lake, fleet, date filter, the exact files read and the spec. (Kept with the run, not in the
lake: the lake stays data written by the exporter and compaction only, which a DVC stage can
own.) Lake files are immutable, so :func:`materialise` reads those files again and gets the same
rows, whatever was appended to the lake since, and checks the hash; a file compaction merged
away is read back from the merged file by the reading ids the compaction log keeps for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype

from prognos.data.dataset import FleetData
from prognos.data.lake_source import canonical_readings, lake_readings
from prognos.errors import LakeError, SnapshotMismatchError
from prognos.fleet import ASSET, TIME, FleetSpec
from prognos.storage.lake import Lake
from prognos.storage.lake_compact import missing_files

__all__ = ["SnapshotManifest", "materialise", "read_manifest", "snapshot_hash"]

_FORMAT = 1
_MISSING = np.uint64(2**64 - 1)  # the length written for a missing text value


def snapshot_hash(readings: pd.DataFrame, spec: FleetSpec) -> str:
    """The SHA-256 (hex) of ``readings``' spec columns, canonically ordered and serialised."""
    missing = [c for c in spec.columns if c not in readings.columns]
    if missing:
        raise LakeError(f"cannot hash the rows: no column(s) {missing} of spec {spec.name!r}")
    columns = {name: _canonical(readings[name], name) for name in spec.columns}
    order = _order(columns)
    digest = hashlib.sha256()
    header = {
        "format": _FORMAT,
        "rows": len(readings),
        "columns": [[name, kind] for name, (kind, _) in columns.items()],
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for kind, values in columns.values():
        values = values[order]
        if kind == "text":
            _update_text(digest, values)
        else:
            digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def _canonical(column: pd.Series, name: str) -> tuple[str, np.ndarray]:
    """(kind, values): int64 / float64 little-endian arrays, or an object array of text."""
    if name == ASSET:  # an id is its text, as the database keeps it (1 and "1" alike)
        return "text", np.array([v if _absent(v) else str(v) for v in column], dtype=object)
    if name == TIME and is_datetime64_any_dtype(column):
        stamps = pd.to_datetime(column, utc=True).dt.as_unit("ns")
        return "int64", stamps.astype("int64").to_numpy().astype("<i8")
    if is_numeric_dtype(column) and not is_bool_dtype(column):
        if name == TIME and column.dtype.kind in "iu":
            return "int64", column.to_numpy().astype("<i8")
        values = column.to_numpy(dtype=np.float64, na_value=np.nan).astype("<f8")
        values[np.isnan(values)] = np.nan  # one NaN pattern
        return "float64", values
    if is_bool_dtype(column) and name != TIME and not column.isna().any():
        return "float64", column.to_numpy(dtype=np.float64).astype("<f8")
    return "text", column.to_numpy(dtype=object)


def _order(columns: dict[str, tuple[str, np.ndarray]]) -> np.ndarray:
    """Row order: asset, time, then every other column (lexicographic; NaN last, missing text
    first)."""
    keys = []
    for kind, values in columns.values():
        if kind == "text":
            texts = np.array(["" if _absent(v) else _text(v) for v in values], dtype=object)
            keys.append(np.unique(texts, return_inverse=True)[1])
        else:
            keys.append(values)
    # np.lexsort sorts by the last key first; NaN sorts last.
    return np.lexsort(tuple(reversed(keys))) if keys and len(keys[0]) else np.arange(0)


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _text(value: Any) -> str:
    """A value with its type: ``1.5`` and ``"1.5"`` differ."""
    return f"{type(value).__name__}:{value!r}"


def _update_text(digest: Any, values: np.ndarray) -> None:
    encoded = [None if _absent(v) else _text(v).encode() for v in values.tolist()]
    lengths = np.array([_MISSING if e is None else len(e) for e in encoded], dtype="<u8")
    digest.update(lengths.tobytes())
    digest.update(b"".join(e for e in encoded if e is not None))


# -------------------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class SnapshotManifest:
    """Where a snapshot's rows are in the lake: enough to read exactly them again."""

    hash: str
    rows: int
    assets: int
    lake: str  # the lake's URL as the run read it
    fleet: str
    start: str | None
    end: str | None
    files: list[str]  # relative to the lake's root
    spec: dict[str, Any]
    run_to_failure: bool
    source: str
    format: int = _FORMAT

    @classmethod
    def of(cls, data: FleetData, digest: str) -> SnapshotManifest | None:
        """The manifest of data read from ``lake:`` (None for any other source)."""
        located = data.meta.get("lake")
        if not isinstance(located, dict):
            return None
        return cls(
            hash=digest,
            rows=len(data.readings),
            assets=int(data.readings[ASSET].nunique()),
            lake=str(located["url"]),
            fleet=str(located["fleet"]),
            start=located.get("start"),
            end=located.get("end"),
            files=list(located["files"]),
            spec=data.spec.model_dump(mode="json"),
            run_to_failure=bool(data.run_to_failure),
            source=data.source,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def read_manifest(text: str, where: str = "the manifest") -> SnapshotManifest:
    """A manifest from its JSON (a run's ``snapshot.json``)."""
    try:
        manifest = SnapshotManifest(**json.loads(text))
    except (TypeError, ValueError) as exc:
        raise LakeError(f"{where} is not a snapshot manifest: {exc}") from exc
    if manifest.format != _FORMAT:
        raise LakeError(f"{where} has format {manifest.format}, expected {_FORMAT}")
    return manifest


def materialise(lake: Lake, manifest: SnapshotManifest) -> FleetData:
    """The rows of a snapshot, rebuilt from the files its manifest lists (in ``lake``, which may
    be a copy of the lake the run read: the paths are relative) and checked against its hash
    (:class:`SnapshotMismatchError` when a file is gone or the rows differ)."""
    gone = missing_files(lake, manifest.files)
    if gone:
        raise SnapshotMismatchError(
            f"snapshot {manifest.hash}: {len(gone)} of its files are gone from {lake.url} "
            f"(first {gone[0]})"
        )
    spec = FleetSpec.model_validate(manifest.spec)
    frame = lake_readings(lake, manifest.files, as_written=True)
    readings = canonical_readings(frame, spec, f"snapshot {manifest.hash}")
    rebuilt = snapshot_hash(readings, spec)
    if rebuilt != manifest.hash:
        raise SnapshotMismatchError(
            f"snapshot {manifest.hash}: the rows rebuilt from {lake.url} hash to {rebuilt}"
        )
    return FleetData(
        readings=readings,
        spec=spec,
        source=f"snapshot:{manifest.hash}",
        run_to_failure=manifest.run_to_failure,
        meta={"snapshot": asdict(manifest)},
    )
