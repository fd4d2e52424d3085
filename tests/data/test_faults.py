"""Injected faults change exactly the readings they name, by the amount they say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prognos.data.faults import (
    NEW_REGIME,
    SENSOR_FAULTS,
    TRANSPORT_FAULTS,
    Fault,
    apply_sensor_faults,
    default_sensor,
    healthy_std,
    parse_fault,
)
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.errors import ConfigError
from prognos.fleet import ASSET


@pytest.fixture(scope="module")
def readings() -> pd.DataFrame:
    return simulate_fleet(SimulatorConfig(n_assets=6, seed=2, min_life=60, max_life=80)).readings


def _rows(frame: pd.DataFrame, first: int, last: int, start: int) -> np.ndarray:
    codes, _ = pd.factorize(frame[ASSET], sort=False)
    number = frame.groupby(ASSET, sort=False).cumcount().to_numpy() + 1
    return (codes + 1 >= first) & (codes + 1 <= last) & (number >= start)


def test_parse_every_form() -> None:
    assert parse_fault("offset:1-10:50:3") == Fault("offset", 1, 10, 50, 3.0)
    assert parse_fault("offset:1-10:50:-2.5:sensor_4") == Fault(
        "offset", 1, 10, 50, -2.5, "sensor_4"
    )
    assert parse_fault("stuck:2-3:5:sensor_7") == Fault("stuck", 2, 3, 5, None, "sensor_7")
    assert parse_fault("drop:4:1") == Fault("drop", 4, 4, 1)
    assert parse_fault("duplicate:1-5:1:0.5").magnitude == 0.5
    assert parse_fault("reorder:1-5:1").magnitude == 0.1
    assert set(SENSOR_FAULTS) | set(TRANSPORT_FAULTS) == {
        "offset", "stuck", "noise", "regime", "duplicate", "reorder", "drop"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("offset:1-10", "expected KIND"),
        ("melt:1-10:5", "unknown kind"),
        ("offset:a-10:5", "FIRST-LAST"),
        ("offset:5-2:5", "FIRST <= LAST"),
        ("offset:0-2:5", "1-based"),
        ("offset:1-2:0", "FROM"),
        ("offset:1-2:x", "reading number"),
        ("offset:1-2:3:big:sensor_1", "SIZE"),
        ("offset:1-2:3:nan", "finite"),
        ("stuck:1-2:3:2", "no SIZE"),
        ("noise:1-2:3:0", "> 0"),
        ("drop:1-2:3:1.5", "probability"),
        ("regime:1-2:3:1:sensor_2", "names no sensor"),
        ("drop:1-2:3:sensor_2", "names no sensor"),
    ],
)
def test_parse_refuses_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        parse_fault(text)
    assert text in str(info.value)


def test_offset_shifts_only_the_named_rows_by_size_stds(readings: pd.DataFrame) -> None:
    faulted = apply_sensor_faults(readings, [parse_fault("offset:2-3:10:2.5:sensor_4")])
    mask = _rows(readings, 2, 3, 10)
    delta = faulted["sensor_4"].to_numpy() - readings["sensor_4"].to_numpy()
    assert np.allclose(delta[mask], 2.5 * healthy_std(readings)["sensor_4"])
    assert np.all(delta[~mask] == 0)
    others = [c for c in readings.columns if c != "sensor_4"]
    pd.testing.assert_frame_equal(faulted[others], readings[others])


def test_default_sensor_is_the_first_that_varies(readings: pd.DataFrame) -> None:
    flat = readings.assign(sensor_1=1.0)
    assert default_sensor(flat) == "sensor_2"
    faulted = apply_sensor_faults(flat, [Fault("offset", 1, 1, 1)])
    assert (faulted["sensor_2"] != flat["sensor_2"]).sum() == _rows(flat, 1, 1, 1).sum()


def test_stuck_freezes_at_the_value_at_from(readings: pd.DataFrame) -> None:
    faulted = apply_sensor_faults(readings, [parse_fault("stuck:1-2:5:sensor_3")])
    for number in (1, 2):
        asset = readings[ASSET].unique()[number - 1]
        before = readings.loc[readings[ASSET] == asset, "sensor_3"].to_numpy()
        after = faulted.loc[faulted[ASSET] == asset, "sensor_3"].to_numpy()
        assert np.all(after[4:] == before[4]) and np.array_equal(after[:4], before[:4])
    untouched = readings[ASSET] == readings[ASSET].unique()[2]
    assert faulted.loc[untouched, "sensor_3"].equals(readings.loc[untouched, "sensor_3"])


def test_noise_raises_the_variance_and_is_seeded(readings: pd.DataFrame) -> None:
    fault = parse_fault("noise:1-6:1:3:sensor_2")
    a = apply_sensor_faults(readings, [fault], seed=7)
    assert a.equals(apply_sensor_faults(readings, [fault], seed=7))
    assert not a.equals(apply_sensor_faults(readings, [fault], seed=8))
    added = (a["sensor_2"] - readings["sensor_2"]).std()
    assert added == pytest.approx(3 * healthy_std(readings)["sensor_2"], rel=0.15)


def test_regime_moves_settings_off_every_drawn_regime(readings: pd.DataFrame) -> None:
    fleet = simulate_fleet(SimulatorConfig(n_assets=6, seed=2, min_life=60, max_life=80))
    faulted = apply_sensor_faults(readings, [parse_fault("regime:4-6:20")])
    mask = _rows(readings, 4, 6, 20)
    settings = faulted.loc[mask, ["setting_1", "setting_2", "setting_3"]].to_numpy()
    assert np.all(settings == np.array(NEW_REGIME))
    regimes = np.array(fleet.meta["regimes"])
    assert np.abs(regimes - np.array(NEW_REGIME)).sum(axis=1).min() > 5
    std = healthy_std(readings)
    for name in std.index:
        delta = (faulted[name] - readings[name]).to_numpy()
        assert np.allclose(np.abs(delta[mask]), std[name]) and np.all(delta[~mask] == 0)


def test_transport_faults_leave_values_alone(readings: pd.DataFrame) -> None:
    faults = [parse_fault(f"{kind}:1-6:1") for kind in TRANSPORT_FAULTS]
    assert apply_sensor_faults(readings, faults).equals(readings)


def test_unknown_sensor_is_named(readings: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="sensor_99"):
        apply_sensor_faults(readings, [parse_fault("offset:1-2:1:sensor_99")])
