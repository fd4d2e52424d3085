"""Batch ingest: a whole source into the readings table, by the rules the live service keeps.

Rows are validated against the fleet spec (bad ones quarantined with their reasons, as ``prognos
data validate`` does), then held to what the service accepts (asset ids it can serve back, times
storage can hold) and stored as the service stores an accepted reading. The readings table is
keyed by (fleet, asset, time) and inserts skip existing keys, so ingesting a source again (or a
file that grew) stores each reading once: the reading stored first stands.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from prognos.errors import DataSourceError
from prognos.fleet import ASSET, TIME
from prognos.flows._common import load, quarantine_path
from prognos.ingestion.readings import EARLIEST_TIMESTAMP, ID_PATTERN, LATEST_TIMESTAMP, MAX_CYCLE
from prognos.storage.database import open_database

if TYPE_CHECKING:
    from prognos.config import Settings
    from prognos.data.dataset import FleetData
    from prognos.storage import Database

__all__ = ["IngestOutcome", "ingest", "ingest_fleet"]

# Readings per transaction: a failure part-way leaves whole chunks stored, and a re-run skips them.
CHUNK_ROWS = 10_000
_ID = re.compile(ID_PATTERN)
_MAX_ID_CHARS = 128  # as the service's AssetId


@dataclass(frozen=True)
class IngestOutcome:
    """What one batch ingest did. ``stored + already_stored`` is the valid rows; every input row
    is either valid or quarantined."""

    source: str
    fleet: str
    total_rows: int
    stored: int  # newly inserted
    already_stored: int  # valid, but that (fleet, asset, time) was stored before
    quarantined: int
    by_rule: dict[str, int]
    quarantine_path: Path | None
    warnings: list[str] = field(default_factory=list)

    @property
    def valid_rows(self) -> int:
        return self.stored + self.already_stored

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fleet": self.fleet,
            "total_rows": self.total_rows,
            "valid_rows": self.valid_rows,
            "stored": self.stored,
            "already_stored": self.already_stored,
            "quarantined": self.quarantined,
            "by_rule": self.by_rule,
            "quarantine_path": None if self.quarantine_path is None else str(self.quarantine_path),
            "warnings": self.warnings,
        }


def ingest(
    settings: Settings,
    source: str,
    *,
    spec: Path | None = None,
    events: Path | None = None,
    quarantine: Path | None = None,
    actor: str = "cli",
) -> IngestOutcome:
    """Load ``source`` (``KIND:PATH``), validate it and store its valid readings in the
    configured database; quarantined rows go to ``quarantine`` (default
    ``$PROGNOS_HOME/quarantine/<source-stem>.csv``)."""
    data = load(source, spec, events)
    db = open_database(settings)
    try:
        return ingest_fleet(settings, data, db, quarantine=quarantine, actor=actor)
    finally:
        db.dispose()


def ingest_fleet(
    settings: Settings,
    data: FleetData,
    db: Database,
    *,
    quarantine: Path | None = None,
    actor: str = "cli",
) -> IngestOutcome:
    """:func:`ingest` of loaded data into ``db``; the fleet column is ``PROGNOS_FLEET``, else
    the spec's name (as the service's). One audit event ``data.ingest`` records the counts."""
    from prognos.data.validation import validate_readings
    from prognos.storage import insert_audit, insert_readings

    result = validate_readings(data.readings, data.spec)
    valid, refused = _storable(result.valid, data)
    by_rule = {count.rule: count.rows for count in result.report.by_rule}
    for reason, rows in refused["reason"].value_counts(sort=False).items():
        rule = str(reason).split(":", 1)[0]
        by_rule[rule] = by_rule.get(rule, 0) + int(rows)
    bad = pd.concat([result.quarantine, refused]) if len(refused) else result.quarantine
    written = None
    if len(bad):
        written = quarantine or quarantine_path(settings, data.source)
        _write_quarantine(bad.sort_values("row", kind="stable"), written)

    fleet = settings.fleet or data.spec.name
    stored = sum(insert_readings(db, rows) for rows in _reading_rows(valid, data, fleet))
    outcome = IngestOutcome(
        source=data.source,
        fleet=fleet,
        total_rows=len(data.readings),
        stored=stored,
        already_stored=len(valid) - stored,
        quarantined=len(bad),
        by_rule=by_rule,
        quarantine_path=written,
        warnings=list(result.report.warnings),
    )
    details = {k: v for k, v in outcome.to_json().items() if k not in ("fleet", "warnings")}
    insert_audit(
        db, [{"actor": actor, "action": "data.ingest", "subject": fleet, "details": details}]
    )
    return outcome


# ------------------------------------------------------------------------------------- storable


def _times(valid: pd.DataFrame) -> np.ndarray:
    """Stored times: cycles as they are, timestamps as UTC nanoseconds (naive means UTC)."""
    column = valid[TIME]
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = pd.to_datetime(column, utc=True).dt.as_unit("ns")
        return stamps.astype("int64").to_numpy()
    return column.to_numpy(dtype=np.int64)


def _storable(valid: pd.DataFrame, data: FleetData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Valid rows the service would also accept, and the rest as quarantine rows with a reason:
    an asset id it could not serve back (``invalid_id``), a cycle or timestamp storage does not
    hold (``unstorable_time``)."""
    from prognos.features.online import asset_key

    assets = valid[ASSET].map(asset_key)
    bad_id = ~assets.map(lambda a: len(a) <= _MAX_ID_CHARS and _ID.match(a) is not None)
    if pd.api.types.is_datetime64_any_dtype(valid[TIME]):
        stamps = pd.to_datetime(valid[TIME], utc=True)
        bad_time = (stamps < EARLIEST_TIMESTAMP) | (stamps >= LATEST_TIMESTAMP)
    else:
        cycles = valid[TIME].to_numpy(dtype=np.int64)
        bad_time = pd.Series((cycles < 0) | (cycles > MAX_CYCLE), index=valid.index)
    reason = np.where(
        bad_id, f"invalid_id:{ASSET}", np.where(bad_time, f"unstorable_time:{TIME}", "")
    )
    refused = reason != ""
    if not refused.any():
        return valid, pd.DataFrame(columns=["row", "reason"])
    index = valid.index[refused]
    raw = data.readings.loc[index].astype(object)
    raw.insert(0, "row", index)
    raw["reason"] = reason[refused]
    return valid[~refused], raw


def _reading_rows(
    valid: pd.DataFrame, data: FleetData, fleet: str
) -> Iterator[list[dict[str, Any]]]:
    """The rows the service's ingestion writes for these readings, in chunks."""
    from prognos.features.online import asset_key
    from prognos.ingestion.predictor import reading_log_row

    channels = [*data.spec.setting_names, *data.spec.sensor_names]
    assets = valid[ASSET].map(asset_key).to_numpy()
    times = _times(valid)
    values = valid[channels].to_numpy(dtype=np.float64)
    for start in range(0, len(valid), CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, len(valid))
        yield [
            reading_log_row(
                dict(zip(channels, values[i].tolist(), strict=True)),
                assets[i],
                int(times[i]),
                fleet,
            )
            for i in range(start, stop)
        ]


def _write_quarantine(frame: pd.DataFrame, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    except OSError as exc:
        raise DataSourceError(f"cannot write the quarantine {path}: {exc}") from exc
