"""Exporting stored readings to the Parquet lake (:mod:`prognos.storage.lake`), idempotently.

Each fleet has a watermark in the lake (``fleet=<f>/_export.json``): the last exported reading
id. An export reads the fleet's readings above it in id order, in batches, writes one file per
date a batch touches (named by the batch's first id) and then advances the watermark. Exporting
again exports nothing twice. A crash between the files and the watermark leaves the watermark
where it was: the retried batch starts at the same id, so it writes the same file names with the
same rows (plus any that arrived meanwhile, which a batch read later would have had), replacing
the files instead of adding copies.

Readings must also not be skipped. An id becomes visible when its transaction commits, and on
PostgreSQL transactions of several writers may commit out of id order: a watermark moved past
id 11 while id 10's transaction was still open would never export 10. So each export first
takes a horizon: on PostgreSQL it briefly locks ``readings`` in SHARE mode, which waits until
every open writing transaction has finished and holds new ones for the moment it takes to read
``max(id)``; every id up to it is then committed (or rolled back), and ids allocated later are
larger. It exports only up to that horizon. SQLite has one writer at a time, so its ``max(id)``
is a horizon already.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, func, select, text

from prognos.errors import LakeError
from prognos.storage.lake import (
    ASSET,
    READING_ID,
    RECEIVED_AT,
    TIME,
    Lake,
    check_fleet,
    part_name,
    partition_date,
)
from prognos.storage.models import Reading

if TYPE_CHECKING:
    import pyarrow as pa

    from prognos.storage.database import Database

__all__ = ["ExportResult", "committed_horizon", "export_fleet", "export_lake", "stored_fleets"]

_READINGS: Table = Reading.__table__  # type: ignore[assignment]
# How long the SHARE lock may wait for open writing transactions before this export gives up.
LOCK_TIMEOUT = "10s"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class ExportResult:
    """What one export of one fleet wrote."""

    fleet: str
    rows: int = 0
    batches: int = 0
    files: list[str] = field(default_factory=list)
    watermark: int = 0  # the last exported reading id after this export

    def to_json(self) -> dict[str, Any]:
        return {
            "fleet": self.fleet,
            "rows": self.rows,
            "batches": self.batches,
            "files": self.files,
            "watermark": self.watermark,
        }


def committed_horizon(db: Database) -> int:
    """The largest reading id at or below which every id is settled (committed or rolled back);
    0 without readings. See the module docstring."""
    r = _READINGS.c
    with db.begin("reading the readings' horizon") as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            conn.execute(text("LOCK TABLE readings IN SHARE MODE"))
        value = conn.execute(select(func.max(r.id))).scalar_one_or_none()
    return int(value or 0)


def stored_fleets(db: Database) -> list[str]:
    """Every fleet with stored readings."""
    with db.translate_errors("listing the stored fleets"), db.engine.connect() as conn:
        return sorted(str(f) for f in conn.execute(select(_READINGS.c.fleet).distinct()).scalars())


def export_lake(
    db: Database, lake: Lake, fleets: list[str] | None = None, *, batch_rows: int = 200_000
) -> list[ExportResult]:
    """Export every fleet (or those named) up to one common horizon."""
    horizon = committed_horizon(db)
    names = stored_fleets(db) if fleets is None else fleets
    return [export_fleet(db, lake, name, batch_rows=batch_rows, horizon=horizon) for name in names]


def export_fleet(
    db: Database,
    lake: Lake,
    fleet: str,
    *,
    batch_rows: int = 200_000,
    horizon: int | None = None,
) -> ExportResult:
    """Append ``fleet``'s readings above its watermark (and at most ``horizon``, default
    :func:`committed_horizon`) to the lake, ``batch_rows`` at a time."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    check_fleet(fleet)
    horizon = committed_horizon(db) if horizon is None else horizon
    state = lake.export_state(fleet)
    result = ExportResult(fleet=fleet, watermark=int(state.get("reading_id", 0)))
    spec = lake.spec(fleet) or {}
    declared = [
        str(channel["name"])
        for group in ("settings", "sensors")
        for channel in spec.get(group) or []
        if isinstance(channel, dict) and "name" in channel
    ]
    while result.watermark < horizon:
        rows = _batch(db, fleet, result.watermark, horizon, batch_rows)
        if not rows:
            break
        first, last = int(rows[0][0]), int(rows[-1][0])
        for day, table in _tables(rows, declared).items():
            relative = f"{lake.partition_dir(fleet, day)}/{part_name(first)}"
            lake.write_table(relative, table)
            result.files.append(relative)
        result.rows += len(rows)
        result.batches += 1
        result.watermark = last
        state = {
            "format": 1,
            "reading_id": last,
            "rows": int(state.get("rows", 0)) + len(rows),
            "updated": datetime.now(UTC).isoformat(),
        }
        lake.write_export_state(fleet, state)
        if len(rows) < batch_rows:
            break
    return result


def _batch(db: Database, fleet: str, after: int, horizon: int, limit: int) -> list[Any]:
    r = _READINGS.c
    stmt = (
        select(r.id, r.asset_id, r.time, r["values"], r.received_at)
        .where(r.fleet == fleet, r.id > after, r.id <= horizon)
        .order_by(r.id)
        .limit(limit)
    )
    with db.translate_errors("reading readings to export"), db.engine.connect() as conn:
        return list(conn.execute(stmt).all())


def _tables(rows: list[Any], declared: list[str]) -> dict[date, pa.Table]:
    """The batch as one table per date, columns as the lake's layout says, rows sorted by asset
    then time within each file."""
    import pyarrow as pa

    seen = {name for row in rows for name in (row[3] or {})}
    channels = [*declared, *sorted(seen - set(declared))]
    groups: dict[date, list[Any]] = defaultdict(list)
    for row in rows:
        received_ns = (_utc(row[4]) - _EPOCH) // timedelta(microseconds=1) * 1000
        groups[partition_date(int(row[2]), received_ns)].append(row)
    tables = {}
    for day, members in groups.items():
        members.sort(key=lambda row: (str(row[1]), int(row[2])))
        columns: dict[str, pa.Array] = {
            ASSET: pa.array([str(row[1]) for row in members], pa.string()),
            TIME: pa.array([int(row[2]) for row in members], pa.int64()),
        }
        for channel in channels:
            values = [_number((row[3] or {}).get(channel)) for row in members]
            columns[channel] = pa.array(values, pa.float64())
        columns[RECEIVED_AT] = pa.array(
            [_utc(row[4]) for row in members], pa.timestamp("us", tz="UTC")
        )
        columns[READING_ID] = pa.array([int(row[0]) for row in members], pa.int64())
        tables[day] = pa.table(columns)
    return tables


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise LakeError(f"a stored reading holds a non-numeric value {value!r}") from exc
