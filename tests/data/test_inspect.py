"""Inspect: real C-MAPSS regimes and dead channels, synthetic regimes, dirty and event-log data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from prognos.data.dataset import FleetData
from prognos.data.inspect import inspect_fleet
from prognos.data.regimes import find_regimes
from prognos.data.sources import load_source
from prognos.fleet import FleetSpec, LabelSpec, SensorSpec

FD001_CONSTANT = [
    "setting_3",
    "sensor_1",
    "sensor_5",
    "sensor_10",
    "sensor_16",
    "sensor_18",
    "sensor_19",
]


def test_inspect_fd001(cmapss_dir: Path) -> None:
    report = inspect_fleet(load_source(f"cmapss:{cmapss_dir / 'train_FD001.txt'}"))
    assert report.n_rows == 20_631 and report.n_assets == 100
    assert report.n_regimes == 1 and report.regimes[0].rows == 20_631
    assert report.constant_columns == FD001_CONSTANT
    assert report.missing_values == {}
    assert report.shape == "run_to_failure"
    assert report.cycles_per_asset.min == 128 and report.cycles_per_asset.max == 362
    assert report.time_span.start == 1 and report.time_span.end == 362
    assert report.events is None
    json.loads(report.model_dump_json())  # serialisable for the CLI


def test_inspect_fd002_six_regimes(cmapss_dir: Path) -> None:
    report = inspect_fleet(load_source(f"cmapss:{cmapss_dir / 'test_FD002.txt'}"))
    assert report.n_regimes == 6
    assert sum(r.rows for r in report.regimes) == report.n_rows
    altitudes = sorted(round(r.center["setting_1"]) for r in report.regimes)
    assert altitudes == [0, 10, 20, 25, 35, 42]
    assert report.shape == "telemetry"  # a test file stops before failure


def test_find_regimes_synthetic() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.3], [20.0, 0.7]])
    settings = centres[rng.integers(0, 3, 3000)] + rng.normal(0, 0.01, (3000, 2))
    assert find_regimes(settings) == 3
    assert find_regimes(settings) == find_regimes(settings)  # deterministic
    # A third setting held constant up to noise must not hide the regimes.
    held = np.column_stack([settings, 100 + rng.normal(0, 0.005, 3000)])
    assert find_regimes(held) == 3
    assert find_regimes(rng.normal(size=(3000, 2))) == 1  # noise around one condition
    assert find_regimes(np.empty((0, 0))) == 1
    assert find_regimes(np.full((50, 2), 3.0)) == 1


def test_inspect_dirty_event_log_fleet() -> None:
    readings = pd.DataFrame(
        {
            "asset_id": [1, 1, 1, 2, 2],
            "time": [1, 2, 3, 1, 2],
            "s1": pd.Series(["1.0", "x", None, "2.0", "3.0"], dtype=object),
            "s2": [5.0, 5.0, 5.0, 5.0, np.nan],
        }
    )
    spec = FleetSpec(
        name="dirty",
        sensors=[SensorSpec(name="s1"), SensorSpec(name="s2")],
        labels=LabelSpec(shape="event_log"),
    )
    events = pd.DataFrame(
        {"asset_id": [1, 1, 2], "time": [3, 3, 2], "event": ["failure", "repair", "failure"]}
    )
    report = inspect_fleet(FleetData(readings, spec, "hand", events=events))
    assert report.missing_values == {"s1": 1, "s2": 1}
    assert report.non_numeric_values == {"s1": 1}
    assert report.constant_columns == ["s2"]
    assert report.settings == [] and report.n_regimes == 1
    assert report.shape == "event_log"
    assert report.events == {"failure": 2, "repair": 1}
    assert report.cycles_per_asset.median == 2.5
