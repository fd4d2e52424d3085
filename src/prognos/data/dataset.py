"""The shape every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from prognos.fleet import FleetSpec


@dataclass
class FleetData:
    """Readings in canonical columns (``FleetSpec.columns``), with an optional event log.

    ``events`` has columns ``asset_id, time, event`` and optionally ``component``; it is set for
    the event-log data shape and ``None`` for run-to-failure data.
    ``run_to_failure`` says whether each asset's last reading is its failure (C-MAPSS training
    files) or the data stops before failure (C-MAPSS test files, live telemetry).
    """

    readings: pd.DataFrame
    spec: FleetSpec
    source: str
    events: pd.DataFrame | None = None
    run_to_failure: bool = False
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def n_assets(self) -> int:
        return int(self.readings["asset_id"].nunique())


def labelled_by_events(spec: FleetSpec) -> FleetSpec:
    """The spec with labels from an event log: when one is given, labels come from it, whatever
    shape the spec was written with."""
    if spec.labels.shape == "event_log":
        return spec
    return spec.model_copy(update={"labels": spec.labels.model_copy(update={"shape": "event_log"})})


def is_run_to_failure(stated: object, spec: FleetSpec, has_events: bool) -> bool:
    """Whether every asset's history ends in its failure: as the fleet's meta states it, else
    what the label shape implies (an event log says the fleet is not run to failure)."""
    if isinstance(stated, bool):
        return stated
    return not has_events and spec.labels.shape == "run_to_failure"
