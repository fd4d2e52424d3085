"""The simulator is ground truth for the rest of the suite: check its physics and its events."""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Literal, cast

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from prognos.data.dataset import FleetData
from prognos.data.simulator import (
    EVENT_COLUMNS,
    SimulatorConfig,
    simulate_fleet,
    simulated_spec,
    stream_readings,
)
from prognos.errors import ConfigError
from prognos.fleet import ASSET, TIME, FleetSpec

Mode = Literal["run_to_failure", "telemetry"]


@pytest.fixture(scope="module")
def rtf() -> FleetData:
    return simulate_fleet(SimulatorConfig(n_assets=40, seed=3))


@pytest.fixture(scope="module")
def telemetry() -> FleetData:
    return simulate_fleet(SimulatorConfig(n_assets=60, seed=5, mode="telemetry"))


def _events(data: FleetData) -> pd.DataFrame:
    assert data.events is not None
    return data.events


def _health(data: FleetData) -> np.ndarray:
    return cast(np.ndarray, data.meta["health"])


def _fault_sensors(data: FleetData) -> list[str]:
    return cast(list[str], data.meta["fault_sensors"])


def _fault_weights(data: FleetData) -> dict[str, dict[str, float]]:
    return cast(dict[str, dict[str, float]], data.meta["fault_weights"])


# --- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"n_assets": 0},
        {"n_sensors": 4, "n_fault_sensors": 5},
        {"n_sensors": 1},
        {"n_regimes": 0},
        {"fault_modes": 0},
        {"min_life": 300, "max_life": 200},
        {"maintenance_rate": 1.5},
        {"noise": -0.1},
        {"mode": "batch"},
        {"name": "has space"},
        {"unknown_field": 1},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SimulatorConfig.model_validate(bad)


def test_config_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("n_assets: 7\nmode: telemetry\nhorizon: 50\n")
    config = SimulatorConfig.from_yaml(path)
    assert (config.n_assets, config.mode, config.horizon) == (7, "telemetry", 50)
    path.write_text("n_assets: -1\n")
    with pytest.raises(ConfigError, match=r"sim\.yaml"):
        SimulatorConfig.from_yaml(path)


# --- shape and determinism --------------------------------------------------------------------


def test_canonical_columns_and_types(rtf: FleetData) -> None:
    data = rtf
    spec = simulated_spec(SimulatorConfig(n_assets=40, seed=3))
    assert isinstance(spec, FleetSpec)
    assert data.spec == spec
    assert list(data.readings.columns) == spec.columns
    assert spec.labels.shape == "run_to_failure"
    assert data.readings[ASSET].dtype == np.int64
    assert data.readings[TIME].dtype == np.int64
    assert (data.readings.dtypes.iloc[2:] == np.float64).all()
    assert data.source == "sim:n_assets=40,seed=3,mode=run_to_failure"
    assert data.run_to_failure and data.events is None
    assert data.n_assets == 40
    sorted_view = data.readings.sort_values([ASSET, TIME], kind="stable")
    assert sorted_view.index.equals(data.readings.index)
    firsts = data.readings.groupby(ASSET)[TIME].agg(["min", "count", "max"])
    assert (firsts["min"] == 1).all() and (firsts["count"] == firsts["max"]).all()
    assert len(_health(data)) == len(data.readings)


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    modes: tuple[Mode, ...] = ("run_to_failure", "telemetry")
    for mode in modes:
        a = simulate_fleet(SimulatorConfig(n_assets=10, seed=1, mode=mode))
        b = simulate_fleet(SimulatorConfig(n_assets=10, seed=1, mode=mode))
        c = simulate_fleet(SimulatorConfig(n_assets=10, seed=2, mode=mode))
        pd.testing.assert_frame_equal(a.readings, b.readings)
        if mode == "telemetry":
            pd.testing.assert_frame_equal(_events(a), _events(b))
        assert not a.readings.equals(c.readings)


def test_seed_changes_assets_not_physics() -> None:
    a, b = SimulatorConfig(seed=1), SimulatorConfig(seed=2)
    assert simulated_spec(a) == simulated_spec(b)
    assert simulated_spec(a) != simulated_spec(SimulatorConfig(design_seed=1))


# --- plausibility -----------------------------------------------------------------------------


def _within_regime(data: FleetData) -> pd.DataFrame:
    """Sensors with each operating regime's mean removed, regime read off the settings."""
    readings = data.readings
    regime = (
        readings["setting_1"].round().astype(str) + "/" + readings["setting_3"].round().astype(str)
    )
    sensors = readings[data.spec.sensor_names]
    return sensors - sensors.groupby(regime).transform("mean")


def test_fault_sensors_track_damage_and_others_do_not(rtf: FleetData) -> None:
    data = rtf
    residual = _within_regime(data)
    health = pd.Series(_health(data), index=residual.index)
    corr = pd.DataFrame(
        {
            asset: rows.corrwith(health.loc[rows.index])
            for asset, rows in residual.groupby(data.readings[ASSET])
        }
    ).T
    mean_abs = corr.abs().mean()
    fault = _fault_sensors(data)
    others = [s for s in data.spec.sensor_names if s not in fault]
    assert len(fault) == 6 and len(others) == 6
    assert (mean_abs[fault] > 0.5).all(), mean_abs[fault]
    assert (mean_abs[others] < 0.2).all(), mean_abs[others]
    # Direction is physical: a fault sensor moves the same way on every asset.
    assert ((corr[fault] > 0).all() | (corr[fault] < 0).all()).all()


def test_values_inside_spec_ranges_and_regimes_present(
    rtf: FleetData, telemetry: FleetData
) -> None:
    for data in (rtf, telemetry):
        for channel in (*data.spec.settings, *data.spec.sensors):
            values = data.readings[channel.name]
            assert values.min() >= channel.min, channel.name
            assert values.max() <= channel.max, channel.name
        points = data.readings[["setting_1", "setting_2", "setting_3"]].round(0) + 0.0
        assert len(points.drop_duplicates()) == 3
        assert np.ptp(data.readings["setting_1"].to_numpy()) > 5


def test_damage_is_monotone_within_a_life_and_exponential(rtf: FleetData) -> None:
    health = pd.Series(data=_health(rtf))
    asset = rtf.readings[ASSET]
    assert health.between(0, 1).all()
    assert (health.groupby(asset).diff().fillna(0) >= 0).all()
    # Starts healthy, ends failed; the second half of the damaged span holds most of the damage.
    assert (health.groupby(asset).first() == 0).all()
    assert np.allclose(health.groupby(asset).last(), 1.0)
    damaged = health[health > 0]
    assert damaged.median() < 0.5


def test_run_to_failure_lives_within_range() -> None:
    config = SimulatorConfig(n_assets=200, seed=11, min_life=150, max_life=200)
    lives = simulate_fleet(config).readings.groupby(ASSET)[TIME].max()
    assert lives.between(150, 200).all()
    assert lives.nunique() > 10


# --- telemetry --------------------------------------------------------------------------------


def test_telemetry_event_log_is_consistent(telemetry: FleetData) -> None:
    data = telemetry
    events = _events(data)
    horizon = 400
    assert not data.run_to_failure
    assert data.spec.labels.shape == "event_log"
    assert list(events.columns) == EVENT_COLUMNS
    assert set(events["event"]) == {"failure", "repair", "maintenance"}
    assert set(events["component"]) == {"fault_1"}
    assert events[TIME].between(1, horizon).all()
    assert (data.readings.groupby(ASSET)[TIME].agg(["min", "max"]) == [1, horizon]).all().all()

    failures = events[events["event"] == "failure"]
    repairs = events[events["event"] == "repair"]
    assert len(failures) > 0 and len(events[events["event"] == "maintenance"]) > 0
    assert failures[[ASSET, TIME]].to_numpy().tolist() == repairs[[ASSET, TIME]].to_numpy().tolist()
    following = events.shift(-1)
    assert (following.loc[failures.index, "event"] == "repair").all()

    # Censored assets: the last life is still running at the end of the horizon.
    last_time = events.groupby(ASSET)[TIME].max().reindex(range(1, 61), fill_value=0)
    assert (last_time < horizon).sum() > 10


def test_damage_resets_after_repair_and_maintenance(telemetry: FleetData) -> None:
    data = telemetry
    health = pd.Series(_health(data), index=pd.MultiIndex.from_frame(data.readings[[ASSET, TIME]]))
    resets = _events(data)[_events(data)["event"].isin(["repair", "maintenance"])]
    resets = resets[resets[TIME] < 400]
    before = health.loc[list(zip(resets[ASSET], resets[TIME], strict=True))].to_numpy()
    after = health.loc[list(zip(resets[ASSET], resets[TIME] + 1, strict=True))].to_numpy()
    assert (before > 0).all()
    assert np.allclose(after, 0.0)
    failed = _events(data)[_events(data)["event"] == "failure"]
    at_failure = health.loc[list(zip(failed[ASSET], failed[TIME], strict=True))].to_numpy()
    assert np.allclose(at_failure, 1.0)
    # Outside a reset, damage never decreases; and nothing reaches 1 without a failure event.
    drops = health.groupby(level=0).diff() < 0
    assert drops.sum() == len(resets)
    assert (health >= 1.0 - 1e-12).sum() == len(failed)


def test_several_fault_modes_have_distinct_signatures() -> None:
    config = SimulatorConfig(n_assets=30, seed=2, mode="telemetry", fault_modes=3)
    data = simulate_fleet(config)
    weights = _fault_weights(data)
    assert set(weights) == {"fault_1", "fault_2", "fault_3"}
    assert len({tuple(sorted(w.items())) for w in weights.values()}) == 3
    assert set().union(*(w.keys() for w in weights.values())) == set(_fault_sensors(data))
    assert set(_events(data)["component"]) <= set(weights)


# --- stream and speed -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["run_to_failure", "telemetry"])
def test_stream_equals_batch(mode: Mode) -> None:
    config = SimulatorConfig(n_assets=15, seed=4, mode=mode, horizon=150)
    batch = simulate_fleet(config).readings
    stream = stream_readings(config)
    first = next(stream)
    assert set(first) == set(batch.columns)
    rows = [first, *stream]
    streamed = pd.DataFrame(rows)
    keys = list(zip(streamed[TIME], streamed[ASSET], strict=True))
    assert keys == sorted(keys)  # interleaved by cycle, assets in id order within a cycle
    streamed = streamed.sort_values([ASSET, TIME]).reset_index(drop=True)
    pd.testing.assert_frame_equal(streamed, batch)


def test_stream_is_lazy() -> None:
    stream = stream_readings(SimulatorConfig(n_assets=1))
    assert inspect.getgeneratorstate(stream) == inspect.GEN_CREATED  # type: ignore[arg-type]
    assert isinstance(next(stream), dict)


def test_hundred_assets_in_well_under_a_second() -> None:
    modes: tuple[Mode, ...] = ("run_to_failure", "telemetry")
    for mode in modes:
        config = SimulatorConfig(n_assets=100, mode=mode)
        simulate_fleet(config)
        start = time.perf_counter()
        simulate_fleet(config)
        assert time.perf_counter() - start < 1.0
