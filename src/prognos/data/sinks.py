"""Writing a fleet back out as a source: ``write_source(data, "parquet:...")`` gives files that
:func:`~prognos.data.sources.load_source` reads back as the same fleet (kept apart from the
readers, which are most of :mod:`prognos.data.sources`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from prognos.data.dataset import FleetData
from prognos.data.sources import parse_source, sidecars
from prognos.errors import DataSourceError, SchemaError

__all__ = ["write_source"]


def write_source(data: FleetData, target: str) -> list[Path]:
    """Write a fleet to ``csv:``/``parquet:``/``cmapss:`` so that ``load_source`` reads it back.

    Readings are written under their *source* column names with the spec as a sidecar, so the
    pair looks like any hand-made source. A stale events sidecar from an earlier write is removed
    when the data has no events. Returns every path written.

    Parquet keeps dtypes exactly. CSV keeps what text can: timestamps come back at pandas' default
    (microsecond) resolution and numeric-looking string ids ("007") come back as integers.
    ``cmapss:`` needs the C-MAPSS shape (3 settings, 21 sensors), writes no sidecars, and the
    file name decides ``run_to_failure`` on reload (``train*``).
    """
    kind, path_str = parse_source(target)
    if kind == "sim":
        raise DataSourceError("sim: sources are generated, not written; write to csv: or parquet:")
    if kind == "lake":
        raise DataSourceError(
            "lake: is filled from the database (prognos ingest, then prognos lake export); "
            "write to csv: or parquet:"
        )
    path = Path(path_str)
    try:
        if kind == "cmapss":
            return _write_cmapss(data, path)
        directory = kind == "parquet" and (path_str.endswith(("/", "\\")) or path.is_dir())
        frame = _source_frame(data)
        if directory:
            path.mkdir(parents=True, exist_ok=True)
            file = path / "part-0.parquet"
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = path
        if kind == "csv":
            frame.to_csv(file, index=False)
        else:
            frame.to_parquet(file, index=False)
        side = sidecars(path, directory=directory)
        data.spec.to_yaml(side.spec)
        side.meta.write_text(
            yaml.safe_dump(
                {"run_to_failure": bool(data.run_to_failure), "written_from": data.source}
            )
        )
        written = [file, side.spec, side.meta]
        if data.events is not None:
            data.events.to_csv(side.events, index=False)
            written.append(side.events)
        elif side.events.exists():
            side.events.unlink()
        return written
    except OSError as exc:
        raise DataSourceError(f"{kind}: cannot write {path}: {exc}") from exc
    except (ValueError, TypeError) as exc:  # pyarrow: mixed-type columns it cannot store
        raise DataSourceError(f"{kind}: cannot write {path}: {exc}") from exc


def _source_frame(data: FleetData) -> pd.DataFrame:
    spec = data.spec
    missing = [c for c in spec.columns if c not in data.readings.columns]
    if missing:
        raise SchemaError(f"readings lack column(s) {missing} of fleet spec {spec.name!r}")
    inverse = {canonical: source for source, canonical in spec.rename_map().items()}
    frame = data.readings.loc[:, spec.columns]
    frame.columns = pd.Index([inverse[c] for c in spec.columns])
    return frame


def _write_cmapss(data: FleetData, path: Path) -> list[Path]:
    spec = data.spec
    if len(spec.settings) != 3 or len(spec.sensors) != 21:
        raise DataSourceError(
            f"cmapss: the format holds exactly 3 settings and 21 sensors; spec {spec.name!r} has "
            f"{len(spec.settings)} and {len(spec.sensors)}: write csv: or parquet: instead"
        )
    if data.events is not None:
        raise DataSourceError("cmapss: the format cannot hold an event log; use csv: or parquet:")
    missing = [c for c in spec.columns if c not in data.readings.columns]
    if missing:
        raise SchemaError(f"readings lack column(s) {missing} of fleet spec {spec.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    data.readings.loc[:, spec.columns].to_csv(path, sep=" ", header=False, index=False)
    return [path]
