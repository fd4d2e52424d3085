"""The lake export job: the database's readings appended to the Parquet lake
(:mod:`prognos.storage.lake_export`), once or every N seconds. ``prognos lake export``, the
``prognos-lake-export`` Prefect flow and ``prognos stream ingest --lake-every`` call it. And
compaction of the lake's small files (``prognos lake compact``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from prognos.errors import ConfigError, PrognosError
from prognos.storage.database import open_database
from prognos.storage.lake import open_lake
from prognos.storage.lake_compact import CompactResult, compact_lake
from prognos.storage.lake_export import ExportResult, export_lake

if TYPE_CHECKING:
    from prognos.config import Settings
    from prognos.fleet import FleetSpec
    from prognos.storage import Database

__all__ = ["compact_once", "describe_fleet", "export_every", "export_once"]

log = logging.getLogger(__name__)


def describe_fleet(
    settings: Settings, fleet: str, spec: FleetSpec | None, run_to_failure: bool | None
) -> None:
    """Keep the fleet's spec and data shape beside its files (what ``lake:`` reads them with)."""
    lake = open_lake(settings.lake)
    if spec is not None:
        lake.write_spec(fleet, spec.model_dump(mode="json"))
    if run_to_failure is not None:
        lake.write_meta(fleet, run_to_failure=run_to_failure)


def export_once(
    settings: Settings,
    fleets: list[str] | None = None,
    *,
    db: Database | None = None,
    actor: str = "cli",
) -> list[ExportResult]:
    """One export of every stored fleet (or those named) to ``settings.lake``; an export that
    wrote rows is in the audit log as ``lake.export`` (one that found nothing new is not)."""
    from prognos.storage import audit

    owned = db is None
    database = open_database(settings) if db is None else db
    try:
        lake = open_lake(settings.lake)
        results = export_lake(database, lake, fleets, batch_rows=settings.lake_export_batch_rows)
        for result in results:
            if result.rows:
                details = {**result.to_json(), "lake": settings.lake}
                audit.record(database, actor, "lake.export", result.fleet, details)
        return results
    finally:
        if owned:
            database.dispose()


def export_every(
    settings: Settings,
    seconds: float,
    *,
    fleets: list[str] | None = None,
    stop: threading.Event | None = None,
    times: int | None = None,
    report: Callable[[list[ExportResult]], None] | None = None,
    actor: str = "cli",
) -> int:
    """Export every ``seconds`` until ``stop`` is set (or ``times`` exports ran); the rows
    exported in all. One database connection pool serves every export. An export that fails
    (database or lake unreachable) is logged and tried again at the next tick: it moved no
    watermark, so nothing is lost or doubled."""
    if seconds <= 0:
        raise ConfigError(f"the export interval must be positive, got {seconds}")
    stop = stop or threading.Event()
    db = open_database(settings)
    total, runs = 0, 0
    try:
        while not stop.is_set():
            try:
                results = export_once(settings, fleets, db=db, actor=actor)
            except PrognosError as exc:
                log.warning("lake export failed, trying again in %g s: %s", seconds, exc)
                results = []
            total += sum(r.rows for r in results)
            runs += 1
            if report is not None:
                report(results)
            if times is not None and runs >= times:
                break
            stop.wait(seconds)
    finally:
        db.dispose()
    return total


def compact_once(
    settings: Settings, fleets: list[str] | None = None, *, min_files: int = 10, actor: str = "cli"
) -> list[CompactResult]:
    """Merge the small files of the lake's partitions (:mod:`prognos.storage.lake_compact`); a
    fleet whose files changed is in the audit log as ``lake.compact``."""
    from prognos.storage import audit

    results = compact_lake(open_lake(settings.lake), fleets, min_files=min_files)
    changed = [r for r in results if r.partitions]
    if changed:
        database = open_database(settings)
        try:
            for result in changed:
                details = {**result.to_json(), "lake": settings.lake}
                audit.record(database, actor, "lake.compact", result.fleet, details)
        finally:
            database.dispose()
    return results
