"""What the flows share: loading a source, opening the database, where quarantined rows go."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prognos.config import Settings
    from prognos.data.dataset import FleetData

# Suffixes dropped from a file name to name what is derived from it (as the CLI does).
_DATA_SUFFIXES = {".csv", ".parquet", ".pq", ".txt", ".gz", ".bz2", ".xz", ".zip", ".zst"}


def load(source: str, spec: Path | None = None, events: Path | None = None) -> FleetData:
    """``KIND:PATH`` with an optional FleetSpec YAML and event log; a bad kind fails first."""
    from prognos.data.sources import load_source, parse_source
    from prognos.fleet import FleetSpec

    parse_source(source)
    fleet_spec = FleetSpec.from_yaml(spec) if spec is not None else None
    return load_source(source, spec=fleet_spec, events=events)


def quarantine_path(settings: Settings, source: str) -> Path:
    """``$PROGNOS_HOME/quarantine/<source-stem>.csv``, the file ``prognos data validate`` writes
    for the same source (``csv:out/fleet.csv`` -> ``fleet``, ``sim:seed=1`` -> ``sim_seed_1``)."""
    from prognos.data.sources import parse_source

    kind, path = parse_source(source)
    if kind == "sim":
        tail = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
        stem = f"sim_{tail}" if tail else "sim"
    else:
        name = Path(Path(path.rstrip("/\\")).name)
        while name.suffix.lower() in _DATA_SUFFIXES:
            name = name.with_suffix("")
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or kind
    return settings.quarantine_dir / f"{stem}.csv"
