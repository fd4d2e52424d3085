"""Data sources: every fleet comes from one string ``KIND:PATH``.

Kinds:

- ``cmapss:PATH``: a NASA C-MAPSS ``FD00x`` text file, read with the built-in spec.
- ``csv:PATH`` / ``parquet:PATH``: a table (for parquet also a directory of ``*.parquet`` files)
  mapped to canonical columns by a :class:`~prognos.fleet.FleetSpec` (explicit, sidecar or
  inferred).
- ``sim:k=v,k=v``: the simulator, with :class:`SimulatorConfig` fields as parameters
  (:mod:`prognos.data.sim_source`).
- ``lake:URL[?fleet=..&start=..&end=..]``: one fleet of the Parquet lake
  (:mod:`prognos.data.lake_source`).

Sidecars sit next to the data so a written fleet loads back as it was:
``<stem>.spec.yaml`` (the spec), ``<stem>.events.csv`` (the event log) and ``<stem>.meta.yaml``
(``run_to_failure``), where ``<stem>`` is the path without its data suffixes (``out/fleet.csv`` ->
``out/fleet``). For a parquet directory they are ``<dir>/spec.yaml``, ``<dir>/events.csv`` and
``<dir>/meta.yaml``.

Loaders map columns and translate I/O errors; they never judge values (strings in numeric columns,
NaN): that is validation's job, which can only quarantine what it gets to see.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pandas.api.types import is_datetime64_any_dtype, is_numeric_dtype

from prognos.data.dataset import FleetData, is_run_to_failure, labelled_by_events
from prognos.data.sim_source import load_sim
from prognos.data.sim_source import parse_params as parse_params  # re-exported: public here first
from prognos.errors import DataSourceError, SchemaError
from prognos.fleet import ASSET, CMAPSS_COLUMNS, TIME, FleetSpec, LabelSpec, SensorSpec, cmapss_spec

KINDS: dict[str, str] = {
    "cmapss": "cmapss:PATH (C-MAPSS FD00x text file)",
    "csv": "csv:PATH (CSV file; spec from spec=, a .spec.yaml sidecar or inferred)",
    "parquet": "parquet:PATH (parquet file or directory of .parquet files)",
    "sim": "sim:k=v,... (simulated fleet; SimulatorConfig fields)",
    "lake": "lake:URL[?fleet=NAME&start=DATE&end=DATE] (one fleet of the Parquet lake)",
}
EVENT_COLUMNS = [ASSET, TIME, "event"]
COMPONENT = "component"

_DATA_SUFFIXES = {".csv", ".parquet", ".pq", ".txt", ".gz", ".bz2", ".xz", ".zip", ".zst"}
_ASSET_CANDIDATES = (ASSET, "unit")
_TIME_CANDIDATES = (TIME, "cycle")


def _known_kinds() -> str:
    return "; ".join(KINDS.values())


def parse_source(source: str) -> tuple[str, str]:
    """Split ``KIND:PATH``; the kind is case-insensitive, only ``sim:`` may have an empty path."""
    kind, sep, path = source.partition(":")
    kind = kind.strip().lower()
    if not sep:
        raise DataSourceError(
            f"data source {source!r} has no KIND: prefix; known kinds: {_known_kinds()}"
        )
    if kind not in KINDS:
        raise DataSourceError(
            f"unknown data source kind {kind!r} in {source!r}; known kinds: {_known_kinds()}"
        )
    if kind != "sim" and not path.strip():
        raise DataSourceError(f"data source {source!r} has an empty path; expected {KINDS[kind]}")
    return kind, path.strip()


# --------------------------------------------------------------------------------------- sidecars


@dataclass(frozen=True)
class Sidecars:
    """Where the spec, event log and meta of a data file live."""

    spec: Path
    events: Path
    meta: Path


def sidecars(path: str | Path, *, directory: bool | None = None) -> Sidecars:
    """Sidecar paths of a data file (``<stem>.spec.yaml``, ...) or directory (``<dir>/...``)."""
    path = Path(path)
    if directory is None:
        directory = path.is_dir()
    if directory:
        return Sidecars(path / "spec.yaml", path / "events.csv", path / "meta.yaml")
    stem = path
    while stem.suffix.lower() in _DATA_SUFFIXES:
        stem = stem.with_suffix("")
    return Sidecars(
        stem.with_name(stem.name + ".spec.yaml"),
        stem.with_name(stem.name + ".events.csv"),
        stem.with_name(stem.name + ".meta.yaml"),
    )


@dataclass(frozen=True)
class TableDescription:
    """What a table's sidecars (or the caller's overrides) say about its readings."""

    spec: FleetSpec
    events: pd.DataFrame | None
    events_path: Path | None  # where ``events`` came from; None without an event log
    run_to_failure: bool


def describe_table(
    path: Path,
    spec: FleetSpec | None,
    events: str | Path | None,
    sample: Callable[[], pd.DataFrame],
    *,
    directory: bool | None = None,
) -> TableDescription:
    """The spec (given, else the sidecar, else inferred from ``sample()``), the event log (given,
    else the sidecar) and whether lives run to failure (meta sidecar) of a csv/parquet table:
    one lookup for the pandas and Spark engines, so both load a written fleet the same way."""
    side = sidecars(path, directory=directory)
    if spec is None and side.spec.exists():
        spec = FleetSpec.from_yaml(side.spec)
    events_path = Path(events) if events is not None else side.events
    event_log: pd.DataFrame | None = None
    if events is not None or side.events.exists():
        event_log = read_events(
            events_path,
            asset_column=spec.asset_column if spec else ASSET,
            time_column=spec.time_column if spec else TIME,
        )
    if spec is None:
        spec = infer_spec(sample(), name=path.name.split(".")[0], event_log=event_log is not None)
    elif event_log is not None:
        spec = labelled_by_events(spec)
    run_to_failure = is_run_to_failure(
        read_meta(side.meta).get("run_to_failure"), spec, has_events=event_log is not None
    )
    return TableDescription(
        spec, event_log, events_path if event_log is not None else None, run_to_failure
    )


# ---------------------------------------------------------------------------------------- loading


def load_source(
    source: str, *, spec: FleetSpec | None = None, events: str | Path | None = None
) -> FleetData:
    """Load a fleet from ``KIND:PATH``: readings in canonical columns, plus events if any.

    ``spec`` overrides the sidecar/built-in spec (not allowed for ``sim:``); ``events`` is an
    event-log CSV for ``csv:``/``parquet:``/``lake:`` and overrides the ``.events.csv`` sidecar.
    """
    kind, path = parse_source(source)
    if kind == "sim":
        if spec is not None or events is not None:
            raise DataSourceError("sim: builds its own spec and events; spec=/events= not accepted")
        return load_sim(source, path)
    if kind == "cmapss":
        if events is not None:
            raise DataSourceError("cmapss: files are run-to-failure; they take no event log")
        return _load_cmapss(source, Path(path), spec)
    if kind == "lake":
        from prognos.data.lake_source import load_lake

        return load_lake(source, path, spec, events, infer_spec=infer_spec, read_events=read_events)
    return _load_table(source, kind, Path(path), spec, events)


def _load_cmapss(source: str, path: Path, spec: FleetSpec | None) -> FleetData:
    raw = _read_text_table(path, kind="cmapss", sep=r"\s+", header=None)
    if raw.shape[1] != len(CMAPSS_COLUMNS):
        raise DataSourceError(
            f"{path} is not a C-MAPSS file: expected {len(CMAPSS_COLUMNS)} whitespace-separated "
            f"columns (unit, cycle, setting_1..3, sensor_1..21), found {raw.shape[1]}"
        )
    raw.columns = pd.Index(CMAPSS_COLUMNS)
    # Integral-looking channels (e.g. sensor_17 "392") are still measurements: keep them float so
    # every C-MAPSS file has the same dtypes. Non-numeric (dirty) columns stay as read.
    for column in CMAPSS_COLUMNS[2:]:
        if raw[column].dtype.kind in "iu":
            raw[column] = raw[column].astype("float64")
    spec = spec or cmapss_spec(cmapss_name(path))
    readings, extras = _apply_spec(raw, spec, path)
    return FleetData(
        readings=readings,
        spec=spec,
        source=source,
        run_to_failure=path.name.lower().startswith("train"),
        meta={"path": str(path), "extra_columns": extras},
    )


def cmapss_name(path: str | Path) -> str:
    """Spec name of a C-MAPSS file: ``train_FD001.txt`` -> ``FD001``."""
    stem = Path(path).name.split(".")[0]
    match = re.search(r"FD\d{3}", stem, flags=re.IGNORECASE)
    return match.group(0).upper() if match else _safe_name(stem, default="cmapss")


def _load_table(
    source: str, kind: str, path: Path, spec: FleetSpec | None, events: str | Path | None
) -> FleetData:
    if kind == "csv":
        raw, directory = _read_text_table(path, kind="csv"), False
    else:
        raw, directory = _read_parquet(path)
    described = describe_table(path, spec, events, lambda: raw, directory=directory)
    readings, extras = _apply_spec(raw, described.spec, path)
    events_path = described.events_path
    return FleetData(
        readings=readings,
        spec=described.spec,
        source=source,
        events=described.events,
        run_to_failure=described.run_to_failure,
        meta={
            "path": str(path),
            "extra_columns": extras,
            "events_path": None if events_path is None else str(events_path),
        },
    )


def _read_text_table(path: Path, *, kind: str, **kwargs: Any) -> pd.DataFrame:
    if not path.exists():
        raise DataSourceError(f"{kind}: no such file: {path}")
    try:
        return pd.read_csv(path, engine="c", **kwargs)
    except pd.errors.EmptyDataError as exc:
        raise DataSourceError(f"{kind}: {path} is empty") from exc
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        raise DataSourceError(f"{kind}: cannot read {path}: {exc}") from exc


def _read_parquet(path: Path) -> tuple[pd.DataFrame, bool]:
    import pyarrow as pa  # deferred: pyarrow costs ~0.1 s to import

    if not path.exists():
        raise DataSourceError(f"parquet: no such file or directory: {path}")
    directory = path.is_dir()
    files = sorted(path.glob("*.parquet")) if directory else [path]
    if not files:
        raise DataSourceError(f"parquet: directory {path} holds no *.parquet files")
    try:
        frames = [pd.read_parquet(file) for file in files]
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataSourceError(f"parquet: cannot read {path}: {exc}") from exc
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return frame.reset_index(drop=True), directory


def read_meta(path: Path) -> dict[str, Any]:
    """A meta sidecar's mapping (empty when there is none): both engines read it, so they agree
    on what it states."""
    if not path.exists():
        return {}
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataSourceError(f"cannot read meta sidecar {path}: {exc}") from exc
    return raw if isinstance(raw, dict) else {}


def _apply_spec(raw: pd.DataFrame, spec: FleetSpec, path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Select the spec's source columns and rename them canonical; report the rest as extras."""
    mapping = spec.rename_map()
    missing = [src for src in mapping if src not in raw.columns]
    if missing:
        named = [src if mapping[src] == src else f"{src} (-> {mapping[src]})" for src in missing]
        raise SchemaError(
            f"{path}: missing column(s) {', '.join(named)} required by fleet spec {spec.name!r}; "
            f"found {[str(c) for c in raw.columns][:40]}"
        )
    extras = [str(c) for c in raw.columns if c not in mapping]
    readings = raw.loc[:, list(mapping)]
    readings.columns = pd.Index(list(mapping.values()))
    readings = readings.loc[:, spec.columns].reset_index(drop=True)
    if spec.time_kind == "timestamp":
        readings[TIME] = _parse_times(readings[TIME])
    return readings, extras


def _parse_times(column: pd.Series) -> pd.Series:
    """ISO 8601 strings -> datetimes; anything else is left as read for validation to judge."""
    if is_datetime64_any_dtype(column) or is_numeric_dtype(column):
        return column
    try:
        return pd.to_datetime(column, format="ISO8601")
    except (ValueError, TypeError):
        return column


def _safe_name(name: str, *, default: str = "fleet") -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    return cleaned or default


def _mostly_numeric(column: pd.Series) -> bool:
    """Numeric dtype, or text whose values mostly parse as numbers (a sensor with dirty cells)."""
    if column.dtype == bool:
        return False
    if is_numeric_dtype(column):
        return True
    if is_datetime64_any_dtype(column):
        return False
    present = column.dropna()
    if present.empty:
        return False
    parsed = pd.to_numeric(present, errors="coerce")
    return bool(parsed.notna().mean() >= 0.5)


def infer_spec(frame: pd.DataFrame, *, name: str, event_log: bool = False) -> FleetSpec:
    """A spec from column names: asset_id/unit, time/cycle, setting_* settings, numeric sensors."""
    columns = [str(c) for c in frame.columns]
    asset = next((c for c in _ASSET_CANDIDATES if c in columns), None)
    time = next((c for c in _TIME_CANDIDATES if c in columns), None)
    if asset is None or time is None:
        what = "asset column (asset_id or unit)" if asset is None else "time column (time or cycle)"
        raise SchemaError(
            f"cannot infer a fleet spec for {name!r}: no {what} among {columns[:40]}; "
            "pass spec= or write a <stem>.spec.yaml sidecar"
        )
    reserved = {asset, time, ASSET, TIME}
    numeric = [c for c in frame.columns if str(c) not in reserved and _mostly_numeric(frame[c])]
    settings = [str(c) for c in numeric if str(c).startswith("setting_")]
    sensors = [str(c) for c in numeric if not str(c).startswith("setting_")]
    if not sensors:
        raise SchemaError(f"cannot infer a fleet spec for {name!r}: no numeric sensor columns")
    time_column = frame[time]
    timestamp = is_datetime64_any_dtype(time_column) or (
        not is_numeric_dtype(time_column) and is_datetime64_any_dtype(_parse_times(time_column))
    )
    return FleetSpec(
        name=_safe_name(name),
        asset_column=asset,
        time_column=time,
        time_kind="timestamp" if timestamp else "cycle",
        settings=[SensorSpec(name=c) for c in settings],
        sensors=[SensorSpec(name=c) for c in sensors],
        labels=LabelSpec(shape="event_log" if event_log else "run_to_failure"),
    )


def read_events(
    path: str | Path,
    *,
    asset_column: str = ASSET,
    time_column: str = TIME,
    known_events: set[str] | None = None,
) -> pd.DataFrame:
    """Read an event-log CSV as canonical ``asset_id, time, event[, component]``, sorted.

    The asset/time columns may carry the fleet's source names or the canonical ones. Unlike
    readings, an event log is small and drives labels, so it is validated here: required columns
    present, no missing asset/time/event, times numeric or ISO 8601, events among
    ``known_events`` when given. Rows are sorted by asset and time (stable).
    """
    path = Path(path)
    raw = _read_text_table(path, kind="events", sep=",")
    rename = {}
    if asset_column in raw.columns and asset_column != ASSET and ASSET not in raw.columns:
        rename[asset_column] = ASSET
    if time_column in raw.columns and time_column != TIME and TIME not in raw.columns:
        rename[time_column] = TIME
    raw = raw.rename(columns=rename)
    missing = [c for c in EVENT_COLUMNS if c not in raw.columns]
    if missing:
        raise SchemaError(
            f"event log {path}: missing column(s) {missing}; found {[str(c) for c in raw.columns]}"
        )
    columns = EVENT_COLUMNS + ([COMPONENT] if COMPONENT in raw.columns else [])
    events = raw.loc[:, columns]
    nulls = {c: int(n) for c, n in events[EVENT_COLUMNS].isna().sum().items() if n}
    if nulls:
        raise SchemaError(f"event log {path}: missing values {nulls}")
    times = _parse_times(events[TIME])
    if not (is_numeric_dtype(times) or is_datetime64_any_dtype(times)) or times.dtype == bool:
        raise SchemaError(f"event log {path}: time column is neither numeric nor ISO 8601")
    events[TIME] = times
    events["event"] = events["event"].astype(str)
    if known_events is not None:
        unknown = sorted(set(events["event"]) - set(known_events))
        if unknown:
            raise SchemaError(
                f"event log {path}: unknown event type(s) {unknown}; known: {sorted(known_events)}"
            )
    return events.sort_values([ASSET, TIME], kind="mergesort").reset_index(drop=True)
