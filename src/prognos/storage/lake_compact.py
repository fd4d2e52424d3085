"""Compacting the Parquet lake (:mod:`prognos.storage.lake`): a lake the exporter feeds every
minute grows a file per date every minute, and readers pay per file (a listing, a footer, a
request on an object store). Compaction merges a partition's small files into one.

The merged file holds the rows readers would keep: one per (asset, time), the lowest reading id
(:func:`prognos.storage.lake.dedupe`), sorted by asset then time. It is named
``part-<first id>-<last id>.parquet`` (its lowest and highest reading id): a ``part-*`` data file
like any other, and a name no export batch writes, so it never replaces a file the exporter may
still rewrite.

Crash safety, step by step (every step is one whole-file write or a delete, see ``Lake._put``):

1. the partition's ``_compacted.json`` gains, for each file about to be merged, the range of
   reading ids it held and its row count;
2. the merged file is written;
3. the files it merged are deleted.

A crash during 3 leaves the merged rows twice, in the merged file and in the old ones: readers
keep one row per (asset, time) anyway, and the next compaction merges the leftovers again. No
step loses a row. Only files the export has finished are merged (their batch starts at or below
the fleet's watermark); the watermark itself is not touched, so the next export appends after
it as before.

Snapshots: a training run's manifest lists the files it read, and compaction deletes files.
:func:`read_as_written` rebuilds a listed file that is gone from the log: its rows are the
partition's rows whose reading id lies in its range. That holds exactly because a partition is
compacted only when every merged file's range holds exactly its own rows in the merged result
(batches cover disjoint id ranges; a lake stitched together by hand may not, and such a
partition is left alone, with the reason). Run one compaction at a time per lake.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prognos.errors import LakeError, SnapshotMismatchError
from prognos.storage.lake import ASSET, READING_ID, RECEIVED_AT, TIME, Lake

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "COMPACTED_FILE",
    "CompactResult",
    "compact_fleet",
    "compact_lake",
    "merged_name",
    "missing_files",
    "read_as_written",
]

COMPACTED_FILE = "_compacted.json"
# part-<first id>[-<last id>].parquet: an export batch's file, or a merged one.
_PART = re.compile(r"^part-(\d{20})(?:-(\d{20}))?\.parquet$")
SMALL_BYTES = 64 * 2**20


@dataclass
class CompactResult:
    """What compacting one fleet did."""

    fleet: str
    partitions: int = 0  # partitions compacted
    files_before: int = 0  # data files in those partitions before
    files_after: int = 0  # and after
    rows: int = 0  # rows in the merged files
    skipped: list[str] = field(default_factory=list)  # "date=...: why" for refused partitions

    def to_json(self) -> dict[str, Any]:
        return {
            "fleet": self.fleet,
            "partitions": self.partitions,
            "files_before": self.files_before,
            "files_after": self.files_after,
            "rows": self.rows,
            "skipped": self.skipped,
        }


def merged_name(first: int, last: int) -> str:
    return f"part-{int(first):020d}-{int(last):020d}.parquet"


def compact_lake(
    lake: Lake, fleets: list[str] | None = None, *, min_files: int = 10,
    small_bytes: int = SMALL_BYTES,
) -> list[CompactResult]:  # fmt: skip
    """Compact every fleet of the lake (or those named)."""
    names = lake.fleets() if fleets is None else fleets
    return [compact_fleet(lake, n, min_files=min_files, small_bytes=small_bytes) for n in names]


def compact_fleet(
    lake: Lake, fleet: str, *, min_files: int = 10, small_bytes: int = SMALL_BYTES
) -> CompactResult:
    """Merge the small files (under ``small_bytes``) of each of ``fleet``'s partitions that has
    at least ``min_files`` of them (files still above the export watermark excepted)."""
    if min_files < 2:
        raise ValueError(f"min_files must be at least 2, got {min_files}")
    # Read before listing: a file named above it may be rewritten by a retried export batch.
    watermark = int(lake.export_state(fleet).get("reading_id", 0))
    result = CompactResult(fleet=fleet)
    for folder, sizes in _partitions(lake, fleet).items():
        small = sorted(
            name
            for name, size in sizes.items()
            if size < small_bytes and (m := _PART.match(name)) and int(m.group(1)) <= watermark
        )
        if len(small) < min_files:
            continue
        merged = _merge(lake, folder, small, watermark)
        if isinstance(merged, str):
            result.skipped.append(f"{folder.split('/')[-1]}: {merged}")
            continue
        target, table, ranges = merged
        log = _log(lake, folder)
        for name, entry in ranges.items():
            if name != target:
                log.setdefault(name, entry)  # names are never reused for other rows
        lake.write_text(f"{folder}/{COMPACTED_FILE}", json.dumps({"format": 1, "files": log}))
        lake.write_table(f"{folder}/{target}", table)
        deleted = [name for name in small if name != target]
        lake.remove(f"{folder}/{name}" for name in deleted)
        result.partitions += 1
        result.files_before += len(sizes)
        result.files_after += len(sizes) - len(deleted) + (0 if target in sizes else 1)
        result.rows += table.num_rows
    return result


def _partitions(lake: Lake, fleet: str) -> dict[str, dict[str, int]]:
    """Each partition folder (relative) -> its data files' names -> sizes in bytes."""
    folders = sorted({f.rsplit("/", 1)[0] for f in lake.files(fleet)})
    return {folder: _folder_files(lake, folder) for folder in folders}


def _merge(
    lake: Lake, folder: str, names: list[str], watermark: int
) -> tuple[str, pa.Table, dict[str, dict[str, int]]] | str:
    """(merged file name, its rows, each input's id range) or why the partition is refused."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    tables = lake.read_tables([f"{folder}/{name}" for name in names])
    if any(READING_ID not in t.column_names for t in tables):
        return "a file has no reading_id column"
    ranges: dict[str, dict[str, int]] = {}
    for name, table in zip(names, tables, strict=True):
        if table.num_rows == 0:
            return f"{name} is empty"
        ids = table.column(READING_ID)
        ranges[name] = {
            "first": int(pc.min(ids).as_py()),
            "last": int(pc.max(ids).as_py()),
            "rows": len(pc.unique(ids)),
        }
        if ranges[name]["last"] > watermark:
            return f"{name} holds reading ids above the export watermark {watermark}"
    combined = pa.concat_tables(tables, promote_options="default")
    combined = combined.select(_column_order(tables))
    ordered = combined.take(
        pc.sort_indices(
            combined, [(ASSET, "ascending"), (TIME, "ascending"), (READING_ID, "ascending")]
        )
    )
    asset = ordered.column(ASSET).to_numpy(zero_copy_only=False)
    times = ordered.column(TIME).to_numpy()
    first_of_key = np.ones(ordered.num_rows, dtype=bool)
    first_of_key[1:] = (asset[1:] != asset[:-1]) | (times[1:] != times[:-1])
    kept = ordered.filter(pa.array(first_of_key))
    kept_ids = np.sort(kept.column(READING_ID).to_numpy())
    if len(np.unique(kept_ids)) != len(kept_ids):
        return "one reading id stands for two (asset, time) keys"
    for name, table in zip(names, tables, strict=True):
        ids = np.unique(table.column(READING_ID).to_numpy())
        lo, hi = ranges[name]["first"], ranges[name]["last"]
        inside = np.searchsorted(kept_ids, hi, "right") - np.searchsorted(kept_ids, lo, "left")
        if inside != len(ids) or not np.isin(ids, kept_ids).all():
            return f"{name}'s reading ids interleave with another file's (not an export's lake)"
    return merged_name(int(kept_ids[0]), int(kept_ids[-1])), kept, ranges


def _column_order(tables: list[pa.Table]) -> list[str]:
    """The lake's column order: asset, time, channels (first seen first), received_at, id."""
    tail = [c for c in (RECEIVED_AT, READING_ID) if any(c in t.column_names for t in tables)]
    channels: list[str] = []
    for table in tables:
        channels += [c for c in table.column_names if c not in {ASSET, TIME, *tail, *channels}]
    return [ASSET, TIME, *channels, *tail]


def _log(lake: Lake, folder: str) -> dict[str, dict[str, int]]:
    """A partition's compaction log: merged-away file name -> its id range and rows."""
    text = lake.read_text(f"{folder}/{COMPACTED_FILE}")
    if not text:
        return {}
    try:
        files = json.loads(text)["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LakeError(f"{lake.url}/{folder}/{COMPACTED_FILE} is damaged: {exc}") from exc
    return dict(files)


# ------------------------------------------------------------------------------------ snapshots


def missing_files(lake: Lake, files: list[str]) -> list[str]:
    """Those of ``files`` that are neither in the lake nor recorded as compacted."""
    logs: dict[str, dict[str, dict[str, int]]] = {}
    gone = []
    for relative in files:
        folder, _, name = relative.rpartition("/")
        if folder not in logs:
            logs[folder] = _log(lake, folder)
        if name not in logs[folder] and not lake.fs.exists(lake.path(relative)):
            gone.append(relative)
    return gone


def read_as_written(lake: Lake, files: list[str]) -> pa.Table:
    """The rows these files held when they were written, whether or not compaction merged them
    since (a snapshot's files): a file the log names is read back as the rows of its partition
    with reading ids in its range, each id once. Not deduplicated across files (readers do)."""
    import pyarrow as pa

    by_folder: dict[str, list[str]] = defaultdict(list)
    for relative in files:
        folder, _, name = relative.rpartition("/")
        by_folder[folder].append(name)
    tables = []
    for folder, names in by_folder.items():
        log = _log(lake, folder)
        try:
            tables += lake.read_tables([f"{folder}/{n}" for n in names if n not in log])
        except FileNotFoundError as exc:
            raise SnapshotMismatchError(f"a file of {lake.url}/{folder} is gone: {exc}") from exc
        compacted = [n for n in names if n in log]
        if compacted:
            tables.append(_compacted_rows(lake, folder, {n: log[n] for n in compacted}))
    if not tables:
        return pa.table({ASSET: pa.array([], pa.string()), TIME: pa.array([], pa.int64())})
    return pa.concat_tables(tables, promote_options="default")


def _compacted_rows(lake: Lake, folder: str, logged: dict[str, dict[str, int]]) -> pa.Table:
    """The rows of these merged-away files: the partition's rows in their id ranges, each id
    once (twice where a compaction stopped before its deletes), counted against the log."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = None
    for entry in logged.values():
        inside = (pc.field(READING_ID) >= entry["first"]) & (pc.field(READING_ID) <= entry["last"])
        wanted = inside if wanted is None else wanted | inside
    present = sorted(_folder_files(lake, folder))
    parts = [t.filter(wanted) for t in lake.read_tables([f"{folder}/{n}" for n in present])]
    rows = pa.concat_tables(parts, promote_options="default") if parts else pa.table({})
    ids = rows.column(READING_ID).to_numpy() if rows.num_rows else np.array([], np.int64)
    _, first = np.unique(ids, return_index=True)
    rows = rows.take(pa.array(np.sort(first), pa.int64())) if rows.num_rows else rows
    ids = np.sort(ids[first])
    for name, entry in logged.items():
        found = int(
            np.searchsorted(ids, entry["last"], "right")
            - np.searchsorted(ids, entry["first"], "left")
        )
        if found != entry["rows"]:
            raise SnapshotMismatchError(
                f"{lake.url}/{folder}/{name} was compacted with {entry['rows']} rows; "
                f"{found} of its reading ids are left"
            )
    return rows


def _folder_files(lake: Lake, folder: str) -> dict[str, int]:
    """A partition's data files: name -> size in bytes."""
    lake.fs.invalidate_cache()
    try:
        listed = lake.fs.glob(f"{lake.path(folder)}/part-*.parquet", detail=True)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise LakeError(f"cannot list {lake.url}/{folder}: {exc}") from exc
    sizes = {}
    for full, info in listed.items():
        name = str(full).rstrip("/").rsplit("/", 1)[-1]
        if _PART.match(name):
            sizes[name] = int(info.get("size") or 0)
    return sizes
