"""The ``lake:`` data source: one fleet of the Parquet lake (:mod:`prognos.storage.lake`) read as
a :class:`FleetData`, like ``parquet:``.

``lake:URL[?fleet=NAME&start=YYYY-MM-DD&end=YYYY-MM-DD]``: ``URL`` is the lake's root (a path or
an fsspec URL); ``fleet`` may be left out when the lake holds one fleet; ``start``/``end``
(inclusive) keep the date partitions between them, pruned by path, so the other files are never
opened. Columns are already canonical (the database's channel names); the spec comes from
``--spec``, else the lake's ``_spec.yaml`` beside the fleet, else it is inferred. The files read
are kept in ``meta["lake"]``: a training run's snapshot manifest lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pandas as pd

from prognos.data.dataset import FleetData, is_run_to_failure, labelled_by_events
from prognos.errors import LakeError, SchemaError
from prognos.fleet import TIME, FleetSpec
from prognos.storage.lake import (
    METADATA_COLUMNS,
    TIMESTAMP_FLOOR_NS,
    Lake,
    dedupe,
    open_lake,
)
from prognos.storage.lake_compact import read_as_written

__all__ = [
    "LakeQuery",
    "canonical_readings",
    "lake_readings",
    "lake_spec",
    "load_lake",
    "parse_lake",
]

_PARAMS = ("fleet", "start", "end")


@dataclass(frozen=True)
class LakeQuery:
    """Which rows of which lake: a fleet and an optional inclusive date range."""

    url: str
    fleet: str | None = None
    start: date | None = None
    end: date | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "fleet": self.fleet,
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
        }


def parse_lake(path: str) -> LakeQuery:
    """``URL[?fleet=..&start=..&end=..]`` -> :class:`LakeQuery`."""
    url, _, query = path.partition("?")
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in _PARAMS:
            raise LakeError(f"lake: unknown parameter {key!r} in {path!r}; known: {list(_PARAMS)}")
        params[key] = value
    try:
        start, end = (date.fromisoformat(params[k]) if params.get(k) else None for k in _PARAMS[1:])
    except ValueError as exc:
        raise LakeError(f"lake: start/end must be YYYY-MM-DD dates in {path!r}: {exc}") from exc
    if start is not None and end is not None and start > end:
        raise LakeError(f"lake: start {start} is after end {end}")
    if not url.strip():
        raise LakeError(f"lake: {path!r} names no lake")
    return LakeQuery(url=url.strip(), fleet=params.get("fleet") or None, start=start, end=end)


def _fleet(lake: Lake, query: LakeQuery) -> str:
    if query.fleet is not None:
        return query.fleet
    fleets = lake.fleets()
    if len(fleets) != 1:
        raise LakeError(
            f"lake {query.url} holds {len(fleets)} fleets ({', '.join(fleets) or 'none'}): "
            "name one with ?fleet=NAME"
        )
    return fleets[0]


def lake_spec(lake: Lake, fleet: str) -> FleetSpec | None:
    """The fleet spec kept beside the fleet (``_spec.yaml``), validated; None without one."""
    kept = lake.spec(fleet)
    return None if kept is None else FleetSpec.model_validate(kept)


def lake_readings(lake: Lake, files: list[str], *, as_written: bool = False) -> pd.DataFrame:
    """These files' readings, one per (asset, time), sorted: asset_id, time (int64), channels,
    received_at, reading_id (``fleet``/``date`` dropped). ``as_written``: the rows the files
    held when written, also where compaction has merged them since (a snapshot's files)."""
    table = read_as_written(lake, files) if as_written else lake.read_files(files)
    frame = table.drop_columns([c for c in ("fleet", "date") if c in table.column_names])
    return dedupe(frame.to_pandas())


def canonical_readings(frame: pd.DataFrame, spec: FleetSpec, where: str) -> pd.DataFrame:
    """The spec's columns of lake rows; timestamps (int64 ns) become UTC datetimes."""
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{where}: no column(s) {missing} of fleet spec {spec.name!r}")
    readings = frame.loc[:, spec.columns].reset_index(drop=True)
    readings["asset_id"] = readings["asset_id"].astype(object)
    if spec.time_kind == "timestamp":
        readings[TIME] = pd.to_datetime(readings[TIME], unit="ns", utc=True)
    return readings


def lake_labels(
    lake: Lake,
    fleet: str,
    spec: FleetSpec,
    events: str | Path | None,
    read_events: Callable[..., pd.DataFrame],
) -> tuple[FleetSpec, pd.DataFrame | None, bool]:
    """How a lake fleet is labelled, the same for the pandas and the Spark engine: the spec
    (labelled by events when an event log is given), the event log, and whether it runs to
    failure (the lake's meta, else the spec's rule)."""
    event_log = None
    if events is not None:
        event_log = read_events(
            events, asset_column=spec.asset_column, time_column=spec.time_column
        )
        spec = labelled_by_events(spec)
    run_to_failure = is_run_to_failure(
        lake.meta(fleet).get("run_to_failure"), spec, has_events=event_log is not None
    )
    return spec, event_log, run_to_failure


def load_lake(
    source: str,
    path: str,
    spec: FleetSpec | None,
    events: str | Path | None,
    *,
    infer_spec: Callable[..., FleetSpec],
    read_events: Callable[..., pd.DataFrame],
) -> FleetData:
    """``load_source`` for ``lake:``; it passes its ``infer_spec`` and ``read_events`` (this
    module sits below ``sources``, which dispatches to it)."""
    query = parse_lake(path)
    lake = open_lake(query.url)
    fleet = _fleet(lake, query)
    files = lake.files(fleet, query.start, query.end)
    if not files:
        dated = query.start or query.end
        span = f" between {query.start or '...'} and {query.end or '...'}" if dated else ""
        raise LakeError(f"lake {query.url} has no files of fleet {fleet!r}{span}")
    frame = lake_readings(lake, files)
    spec = spec or lake_spec(lake, fleet)
    if spec is None:  # stored times at or past 1971 in nanoseconds are timestamps
        sample = frame.drop(columns=list(METADATA_COLUMNS))
        if len(sample) and bool((sample[TIME] >= TIMESTAMP_FLOOR_NS).all()):
            sample[TIME] = pd.to_datetime(sample[TIME], unit="ns", utc=True)
        spec = infer_spec(sample, name=fleet)
    spec, event_log, run_to_failure = lake_labels(lake, fleet, spec, events, read_events)
    readings = canonical_readings(frame, spec, f"lake {query.url} fleet {fleet!r}")
    located = LakeQuery(url=query.url, fleet=fleet, start=query.start, end=query.end)
    return FleetData(
        readings=readings,
        spec=spec,
        source=source,
        events=event_log,
        run_to_failure=run_to_failure,
        meta={
            "path": query.url,
            "extra_columns": [c for c in frame.columns if c not in spec.columns],
            "events_path": None if events is None else str(events),
            "lake": {**located.to_json(), "files": files},
        },
    )
