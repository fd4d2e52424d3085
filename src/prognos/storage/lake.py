"""The Parquet lake: where stored readings are kept as files any engine reads (pandas/pyarrow,
DuckDB, Spark), beside the database that serves them. This module is its layout and file I/O;
:mod:`prognos.storage.lake_export` fills it from the database.

Layout (Hive partitions, under a local path or any fsspec URL: ``s3://bucket/lake``,
``memory://lake``)::

    <root>/fleet=<fleet>/date=<YYYY-MM-DD>/part-<first reading id, 20 digits>.parquet
    <root>/fleet=<fleet>/_spec.yaml      the fleet spec (optional; ``lake:`` infers one without)
    <root>/fleet=<fleet>/_meta.yaml      ``run_to_failure: true|false`` (optional)
    <root>/fleet=<fleet>/_export.json    the exporter's watermark (last exported reading id)
    <root>/fleet=<fleet>/date=<...>/_compacted.json   files merged by compaction, and their ids

Names starting with ``_`` are skipped by pyarrow's and Spark's partition discovery and match no
``*.parquet`` glob, so readers see only the data files.

Columns of every data file, in this order: ``asset_id`` (string), ``time`` (int64: the cycle, or
nanoseconds since the epoch, UTC, for timestamped fleets: as the database stores it), one
float64 column per channel (settings then sensors in the spec's order when the lake has the
spec, then any other channel by name; null where a reading lacks it), ``received_at``
(timestamp[us, UTC], when the reading was stored) and ``reading_id`` (int64, the database's
insertion id). ``fleet`` and ``date`` are in the path only. Files of one fleet may differ in
their channels (a channel added later): read with schema merging (pyarrow: unify the files'
schemas, as :func:`read_files` does; Spark: ``mergeSchema``; DuckDB: ``union_by_name``).

``date`` is the UTC day of the reading's time for timestamped readings (``time`` at or after
1971-01-01 in nanoseconds; cycles never reach it), and the UTC day it was stored
(``received_at``) for fleets counted in cycles, which carry no date of their own.

Files are written once and never changed, except that an export batch retried after a crash
rewrites its own files (same names, the same rows plus any that arrived meanwhile): a reader
of the lake sees every reading once. Compaction (:mod:`prognos.storage.lake_compact`) merges a
partition's small files into ``part-<first id>-<last id>.parquet`` and then deletes them,
noting in the partition's ``_compacted.json`` which reading ids each deleted file held.
``(fleet, asset_id, time)`` is unique, as in the database.
Readers in prognos still keep the lowest ``reading_id`` per key (:func:`dedupe`), so a lake
copied together by hand cannot double-count.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import yaml

from prognos.errors import LakeError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as pads
    from fsspec import AbstractFileSystem

__all__ = [
    "ASSET",
    "CHANNEL_TYPE",
    "FLEET_PATTERN",
    "PARTITIONS",
    "READING_ID",
    "RECEIVED_AT",
    "TIME",
    "TIMESTAMP_FLOOR_NS",
    "Lake",
    "dedupe",
    "open_lake",
    "part_name",
    "partition_date",
]

PARTITIONS = ("fleet", "date")
ASSET, TIME, RECEIVED_AT, READING_ID = "asset_id", "time", "received_at", "reading_id"
METADATA_COLUMNS = (RECEIVED_AT, READING_ID)
CHANNEL_TYPE = "float64"
SPEC_FILE, META_FILE, EXPORT_FILE = "_spec.yaml", "_meta.yaml", "_export.json"
# As Settings.fleet: names paths, topics and keys, so no separators or wildcards.
FLEET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# 1971-01-01 UTC in nanoseconds: stored timestamps start there, stored cycles stay below 2**53.
TIMESTAMP_FLOOR_NS = 31_536_000 * 10**9
_DATE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_NS_PER_DAY = 86_400 * 10**9
_FETCH = 64  # data files fetched at once (whole, into memory) by Lake.read_tables


def part_name(first_reading_id: int) -> str:
    """A batch's file name in each date it touches: fixed by its first reading id, so a batch
    written again after a crash replaces its own files instead of adding copies."""
    return f"part-{int(first_reading_id):020d}.parquet"


def partition_date(time: int, received_at_ns: int) -> date:
    """The ``date`` partition of one reading (see the module docstring)."""
    stamp = time if time >= TIMESTAMP_FLOOR_NS else received_at_ns
    return date.fromordinal(date(1970, 1, 1).toordinal() + stamp // _NS_PER_DAY)


def check_fleet(fleet: str) -> str:
    if not re.match(FLEET_PATTERN, fleet):
        raise LakeError(f"fleet {fleet!r} cannot name a lake partition (expected {FLEET_PATTERN})")
    return fleet


@dataclass(frozen=True)
class Lake:
    """One lake: a filesystem (fsspec) and the root path on it. Paths it returns for files are
    relative to the root (``fleet=a/date=2026-01-02/part-....parquet``), as manifests keep them."""

    url: str
    fs: AbstractFileSystem
    root: str

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root

    def fleet_dir(self, fleet: str) -> str:
        return f"fleet={check_fleet(fleet)}"

    def partition_dir(self, fleet: str, day: date) -> str:
        return f"{self.fleet_dir(fleet)}/date={day.isoformat()}"

    # -- listing ----------------------------------------------------------------------------

    def fleets(self) -> list[str]:
        """The fleets the lake holds (those with a ``fleet=`` folder)."""
        self.fs.invalidate_cache()  # listings cached by s3fs & co. go stale across processes
        try:
            entries = self.fs.ls(self.root, detail=False) if self.fs.exists(self.root) else []
        except OSError as exc:
            raise LakeError(f"cannot list the lake {self.url}: {exc}") from exc
        names = (str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)
        return sorted(n.removeprefix("fleet=") for n in names if n.startswith("fleet="))

    def files(self, fleet: str, start: date | None = None, end: date | None = None) -> list[str]:
        """A fleet's data files with ``start <= date <= end`` (either open), relative, sorted by
        date then name: partition pruning by path, nothing is opened."""
        base = self.path(self.fleet_dir(fleet))
        self.fs.invalidate_cache()
        try:
            found = self.fs.glob(f"{base}/date=*/part-*.parquet") if self.fs.exists(base) else []
        except OSError as exc:
            raise LakeError(f"cannot list {base}: {exc}") from exc
        kept = []
        for full in found:
            relative = self._relative(str(full))
            match = _DATE.match(relative.split("/")[1])
            if match is None:
                continue
            day = date.fromisoformat(match.group(1))
            if (start is None or day >= start) and (end is None or day <= end):
                kept.append(relative)
        return sorted(kept)

    def _relative(self, full: str) -> str:
        prefix = self.root.rstrip("/").lstrip("/") + "/"
        if not full.lstrip("/").startswith(prefix):
            raise LakeError(f"{full} is not under the lake {self.url}")
        return full.lstrip("/")[len(prefix) :]

    # -- reading ----------------------------------------------------------------------------

    def read_files(self, files: Iterable[str]) -> pa.Table:
        """These data files as one table with ``fleet`` and ``date`` columns from their paths,
        the files' schemas unified (a channel missing from a file reads as null)."""
        import pyarrow as pa

        relatives = list(files)
        try:
            read = self.read_tables(relatives)
        except FileNotFoundError as exc:
            raise LakeError(
                f"a file of {self.url} is gone ({exc}): compacted while it was read? read again"
            ) from exc
        tables = []
        for relative, table in zip(relatives, read, strict=True):
            fleet_part, date_part = relative.split("/")[:2]
            rows = table.num_rows
            table = table.append_column(
                "fleet", pa.array([fleet_part.removeprefix("fleet=")] * rows, pa.string())
            )
            day = date.fromisoformat(date_part.removeprefix("date="))
            tables.append(table.append_column("date", pa.array([day] * rows, pa.date32())))
        if not tables:
            return pa.table({ASSET: pa.array([], pa.string()), TIME: pa.array([], pa.int64())})
        return pa.concat_tables(tables, promote_options="default")

    def read_tables(self, files: list[str]) -> list[pa.Table]:
        """Each of these data files as a table (:class:`FileNotFoundError` for one that is
        gone). Files are fetched whole, ``_FETCH`` at a time with one ``cat``: on an object store
        one GET per file, sent concurrently, where pyarrow reading a path makes several requests
        one after another (measured on moto's S3: 200 small files in 11 s that way)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for start in range(0, len(files), _FETCH):
            chunk = files[start : start + _FETCH]
            paths = [self.path(relative) for relative in chunk]
            try:
                fetched = self.fs.cat(paths)
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise LakeError(f"cannot read {self.url}/{chunk[0]} and on: {exc}") from exc
            for relative, path in zip(chunk, paths, strict=True):
                try:
                    tables.append(pq.read_table(pa.BufferReader(fetched[path])))
                except (KeyError, pa.ArrowException) as exc:
                    raise LakeError(f"cannot read {self.url}/{relative}: {exc}") from exc
        return tables

    def dataset(self, fleet: str | None = None) -> pads.Dataset:
        """The whole lake (or one fleet) as a pyarrow dataset with Hive partitioning, for
        filtered scans: ``lake.dataset().to_table(filter=(pc.field("fleet") == "a") & ...)``."""
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        files = [
            self.path(f) for name in ([fleet] if fleet else self.fleets()) for f in self.files(name)
        ]
        schemas = [pq.read_schema(f, filesystem=self.fs) for f in files]
        partitioning = ds.partitioning(
            pa.schema([("fleet", pa.string()), ("date", pa.date32())]), flavor="hive"
        )
        return ds.dataset(
            files,
            filesystem=self.fs,
            format="parquet",
            partitioning=partitioning,
            partition_base_dir=self.root,
            schema=pa.unify_schemas([*schemas, partitioning.schema]) if schemas else None,
        )

    # -- writing ----------------------------------------------------------------------------

    def write_table(self, relative: str, table: pa.Table) -> None:
        """Write one data file whole (see :meth:`_put`: a reader never sees half a file)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            buffer = pa.BufferOutputStream()
            pq.write_table(table, buffer, compression="zstd")
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"cannot write {self.url}/{relative}: {exc}") from exc
        self._put(relative, buffer.getvalue().to_pybytes())

    def read_text(self, relative: str) -> str | None:
        """A small side file's text, or None where there is none."""
        try:  # one GET on an object store, never answered from a cached listing
            return bytes(self.fs.cat_file(self.path(relative))).decode()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LakeError(f"cannot read {self.url}/{relative}: {exc}") from exc

    def write_text(self, relative: str, text: str) -> None:
        """A small side file, replaced whole (see :meth:`_put`)."""
        self._put(relative, text.encode())

    def remove(self, relatives: Iterable[str]) -> None:
        """Delete these files (compaction's last step)."""
        paths = [self.path(r) for r in relatives]
        if not paths:
            return
        try:
            self.fs.rm(paths)
        except OSError as exc:
            raise LakeError(f"cannot delete {len(paths)} files of {self.url}: {exc}") from exc

    def _put(self, relative: str, data: bytes) -> None:
        """Store a whole file so that readers see the old one, or none, or the new one whole.

        On a local disk the bytes go to ``_tmp-<uuid>`` beside the target, then are renamed
        over it (atomic on POSIX). Object stores (s3, gcs, memory) have no rename, but an
        object becomes visible only whole, when its PUT (or its multipart upload's completion)
        succeeds: a crash mid-upload leaves the old object or none. So the bytes are encoded in
        memory first and sent in one ``pipe_file``: an error while encoding never reaches the
        store (a file fsspec opened for writing is committed when its ``with`` block raises).
        No folder is made there: object stores have none, and s3fs's ``makedirs`` would create
        a missing bucket instead of failing on a mistyped URL.
        """
        target = self.path(relative)
        try:
            if not _is_local(self.fs):
                self.fs.pipe_file(target, data)
                return
            folder = target.rsplit("/", 1)[0]
            staging = f"{folder}/_tmp-{uuid.uuid4().hex}"
            self.fs.makedirs(folder, exist_ok=True)
            try:
                with self.fs.open(staging, "wb") as handle:
                    handle.write(data)
                self.fs.mv(staging, target)
            finally:
                if self.fs.exists(staging):
                    self.fs.rm(staging)
        except OSError as exc:
            raise LakeError(f"cannot write {self.url}/{relative}: {exc}") from exc

    # -- the fleet's side files -------------------------------------------------------------

    def spec(self, fleet: str) -> dict[str, Any] | None:
        """The fleet spec kept beside the fleet, as its YAML mapping (``FleetSpec`` validates
        it: storage sits below the spec's module)."""
        text = self.read_text(f"{self.fleet_dir(fleet)}/{SPEC_FILE}")
        loaded = None if text is None else yaml.safe_load(text)
        return loaded if isinstance(loaded, dict) else None

    def write_spec(self, fleet: str, spec: dict[str, Any]) -> None:
        """Keep a fleet spec (``FleetSpec.model_dump(mode="json")``) beside the fleet."""
        text = yaml.safe_dump(spec, sort_keys=False)
        self.write_text(f"{self.fleet_dir(fleet)}/{SPEC_FILE}", text)

    def meta(self, fleet: str) -> dict[str, Any]:
        text = self.read_text(f"{self.fleet_dir(fleet)}/{META_FILE}")
        loaded = yaml.safe_load(text) if text else None
        return loaded if isinstance(loaded, dict) else {}

    def write_meta(self, fleet: str, **values: Any) -> None:
        meta = {**self.meta(fleet), **values}
        self.write_text(f"{self.fleet_dir(fleet)}/{META_FILE}", yaml.safe_dump(meta))

    def export_state(self, fleet: str) -> dict[str, Any]:
        """The exporter's watermark: ``{"reading_id": last exported id, "rows": ..., ...}``."""
        text = self.read_text(f"{self.fleet_dir(fleet)}/{EXPORT_FILE}")
        return json.loads(text) if text else {"reading_id": 0, "rows": 0}

    def write_export_state(self, fleet: str, state: dict[str, Any]) -> None:
        self.write_text(f"{self.fleet_dir(fleet)}/{EXPORT_FILE}", json.dumps(state, indent=2))


def open_lake(url: str) -> Lake:
    """The lake at a local path or fsspec URL. ``s3://`` needs s3fs; its endpoint and
    credentials come from the environment as for any AWS SDK (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``...), not the URL: the URL
    goes into audit events and snapshot manifests, secrets must not."""
    from fsspec.core import url_to_fs

    text = str(url).strip()
    if not text:
        raise LakeError("the lake URL is empty")
    try:
        fs, root = url_to_fs(text)
    except (ImportError, ValueError) as exc:
        raise LakeError(f"cannot open the lake {text!r}: {exc}") from exc
    root = str(root).rstrip("/") or "/"
    if _is_local(fs):
        from pathlib import Path

        root = str(Path(root).resolve())
    return Lake(url=text, fs=fs, root=root)


def _is_local(fs: AbstractFileSystem) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (asset_id, time): the one stored first (lowest ``reading_id``), sorted by
    asset then time (the order features read)."""
    order = [ASSET, TIME, READING_ID] if READING_ID in frame.columns else [ASSET, TIME]
    ordered = frame.sort_values(order, kind="mergesort")
    return ordered.drop_duplicates([ASSET, TIME], keep="first").reset_index(drop=True)
