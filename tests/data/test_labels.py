"""Labels: exact values on hand-built fleets, both data shapes, and the dispatch rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prognos.data.dataset import FleetData
from prognos.data.labels import event_log_labels, labels_for, run_to_failure_labels
from prognos.data.sources import load_source
from prognos.errors import LabelError
from prognos.fleet import FleetSpec, LabelSpec, SensorSpec

NAN = np.nan


def test_run_to_failure_labels_exact_and_aligned() -> None:
    readings = pd.DataFrame(
        {"asset_id": [1] * 5 + [2] * 3, "time": [1, 2, 3, 4, 5, 1, 2, 3], "s": 0.0},
        index=[10, 11, 12, 13, 14, 20, 21, 22],
    )
    shuffled = readings.sample(frac=1, random_state=1)
    labels = run_to_failure_labels(shuffled, rul_cap=3, horizon=1)
    assert labels.index.equals(shuffled.index)
    labels = labels.loc[readings.index]
    assert labels["rul"].tolist() == [4, 3, 2, 1, 0, 2, 1, 0]
    assert labels["rul"].dtype == "float64"
    assert labels["rul_capped"].tolist() == [3, 3, 2, 1, 0, 2, 1, 0]
    assert labels["failure_within_h"].tolist() == [0, 0, 0, 1, 1, 0, 1, 1]
    assert labels["failure_within_h"].dtype == "int64"


def _event_case() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Horizon 3. Asset 1 fails at 5 (a fan replacement logged at the same time); asset 2 is
    repaired at 3 and its pump fails at 7; asset 3 never fails; asset 4 gets a fan replacement at
    2 and its pump fails at 5."""
    times = [*range(1, 7), *range(1, 9), *range(1, 7), *range(1, 7)]
    assets = [1] * 6 + [2] * 8 + [3] * 6 + [4] * 6
    readings = pd.DataFrame({"asset_id": assets, "time": times, "s": 0.0})
    events = pd.DataFrame(
        {
            "asset_id": [1, 1, 2, 2, 4, 4],
            "time": [5, 5, 3, 7, 2, 5],
            "event": ["replacement", "failure", "repair", "failure", "replacement", "failure"],
            "component": ["fan", "fan", None, "pump", "fan", "pump"],
        }
    )
    return readings, events


def test_event_log_labels_hand_computed() -> None:
    readings, events = _event_case()
    shuffled = readings.sample(frac=1, random_state=0)
    labels = event_log_labels(shuffled, events, horizon=3)
    assert labels.index.equals(shuffled.index)
    labels = labels.loc[readings.index]
    expected_ttf = [
        *[4, 3, 2, 1, 0, NAN],  # failure at 5 beats the replacement at 5; row 6 is after it
        *[NAN, NAN, NAN, 3, 2, 1, 0, NAN],  # censored at the repair (3, inclusive), then fails
        *[NAN] * 6,  # never fails
        *[NAN, NAN, 2, 1, 0, NAN],  # replacement at 2 censors rows 1-2
    ]
    np.testing.assert_array_equal(labels["time_to_failure"], expected_ttf)
    assert labels["censored"].tolist() == list(np.isnan(expected_ttf))
    np.testing.assert_array_equal(
        labels["observed_for"],
        [4, 3, 2, 1, 0, 0, 2, 1, 0, 3, 2, 1, 0, 0, 5, 4, 3, 2, 1, 0, 1, 0, 2, 1, 0, 0],
    )
    np.testing.assert_array_equal(
        labels["failure_within_h"],
        [
            *[0, 1, 1, 1, 1, NAN],  # 4 cycles out: known to survive the 3-cycle horizon
            *[NAN, NAN, NAN, 1, 1, 1, 1, NAN],  # repaired before the horizon: unknown
            *[0, 0, 0, NAN, NAN, NAN],  # followed >= 3 cycles without failure: healthy
            *[NAN, NAN, 1, 1, 1, NAN],
        ],
    )


def test_censored_as_healthy_turns_unknown_into_zero() -> None:
    readings, events = _event_case()
    labels = event_log_labels(readings, events, horizon=3, censored_as_healthy=True)
    strict = event_log_labels(readings, events, horizon=3)
    assert not labels["failure_within_h"].isna().any()
    unknown = strict["failure_within_h"].isna()
    assert (labels.loc[unknown, "failure_within_h"] == 0).all()
    pd.testing.assert_series_equal(
        labels.loc[~unknown, "failure_within_h"], strict.loc[~unknown, "failure_within_h"]
    )


def test_event_log_labels_per_component() -> None:
    readings, events = _event_case()
    labels = event_log_labels(readings, events, horizon=3)
    np.testing.assert_array_equal(labels["time_to_failure__fan"], [4, 3, 2, 1, 0, *[NAN] * 21])
    # Pump: the asset-wide repair at 3 censors asset 2; asset 4's fan replacement does not.
    np.testing.assert_array_equal(
        labels["time_to_failure__pump"],
        [*[NAN] * 6, NAN, NAN, NAN, 3, 2, 1, 0, NAN, *[NAN] * 6, 4, 3, 2, 1, 0, NAN],
    )
    assert labels["censored__pump"].tolist() == list(np.isnan(labels["time_to_failure__pump"]))


def test_event_log_labels_timestamps_in_hours() -> None:
    start = pd.Timestamp("2024-01-01")
    readings = pd.DataFrame(
        {"asset_id": "a", "time": pd.date_range(start, periods=6, freq="h"), "s": 0.0}
    )
    events = pd.DataFrame(
        {"asset_id": ["a"], "time": [start + pd.Timedelta(minutes=270)], "event": ["failure"]}
    )
    labels = event_log_labels(readings, events, horizon=2)
    np.testing.assert_allclose(labels["time_to_failure"][:5], [4.5, 3.5, 2.5, 1.5, 0.5])
    np.testing.assert_array_equal(labels["failure_within_h"], [0, 0, 0, 1, 1, NAN])


def _fleet(readings: pd.DataFrame, shape: str, **kwargs: object) -> FleetData:
    spec = FleetSpec(
        name="hand",
        sensors=[SensorSpec(name="s")],
        labels=LabelSpec(shape=shape, horizon=3),  # type: ignore[arg-type]
    )
    return FleetData(readings=readings, spec=spec, source="hand", **kwargs)  # type: ignore[arg-type]


def test_labels_for_dispatch_and_refusals(cmapss_dir: Path) -> None:
    readings, events = _event_case()
    labels = labels_for(_fleet(readings, "event_log", events=events))
    assert "time_to_failure" in labels.columns
    with pytest.raises(LabelError, match="no event log"):
        labels_for(_fleet(readings, "event_log"))
    with pytest.raises(LabelError, match="stops before failure"):
        labels_for(_fleet(readings, "run_to_failure", run_to_failure=False))
    test_file = load_source(f"cmapss:{cmapss_dir / 'test_FD001.txt'}")
    with pytest.raises(LabelError, match="C-MAPSS test file"):
        labels_for(test_file)
    train = load_source(f"cmapss:{cmapss_dir / 'train_FD001.txt'}")
    labels = labels_for(train)
    assert len(labels) == len(train.readings)
    last_rows = train.readings.groupby("asset_id")["time"].idxmax()
    assert (labels.loc[last_rows, "rul"] == 0).all()
    assert labels["rul_capped"].max() == 125
